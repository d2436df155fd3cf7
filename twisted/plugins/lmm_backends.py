# lmm's own backends. Declaring one imports nothing heavy: see lmm.backends.
from lmm.backends import Backend
from lmm.interfaces import ITunnelDataPlane

recordingTunnel = Backend(
    "recording", ITunnelDataPlane, "lmm.tunnel:recordingBackend",
    "carries no packets, records what it is asked (tests, signaling benchmarks)",
)

from lmm.interfaces import IAuthenticator  # noqa: E402 (appended with the AAA backends)

fileAuthenticator = Backend(
    "file", IAuthenticator, "lmm.aaa:fileBackend",
    "MS profiles from a TOML file, for setups without a RADIUS server",
)
radiusAuthenticator = Backend(
    "radius", IAuthenticator, "lmm.radius:radiusBackend",
    "RADIUS (PAP, Message-Authenticator) to servers in order; RFC 6572 profile attributes",
)
