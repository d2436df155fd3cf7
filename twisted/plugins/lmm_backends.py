# lmm's own backends. Declaring one imports nothing heavy: see lmm.backends.
from lmm.backends import Backend
from lmm.interfaces import ITunnelDataPlane

recordingTunnel = Backend(
    "recording", ITunnelDataPlane, "lmm.tunnel:recordingBackend",
    "carries no packets, records what it is asked (tests, signaling benchmarks)",
)
