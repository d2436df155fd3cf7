# A third party's lmm backend: this directory on PYTHONPATH is all it takes
# (docs/operations.md, "A backend of your own"). Declaring imports nothing heavy.
from lmm.backends import Backend
from lmm.interfaces import IAuthenticator

allowlist = Backend(
    "allowlist", IAuthenticator, "lmm_example.allowlist:allowlistBackend",
    "example third-party backend: the MACs on a list get access, all with one profile",
)
