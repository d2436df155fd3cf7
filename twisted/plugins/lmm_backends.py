# lmm's own backends. Declaring one imports nothing heavy: see lmm.backends.
from lmm.backends import Backend
from lmm.interfaces import IAttachDetector, IAuthenticator, ITunnelDataPlane

recordingTunnel = Backend(
    "recording", ITunnelDataPlane, "lmm.tunnel:recordingBackend",
    "carries no packets, records what it is asked (tests, signaling benchmarks)",
)

fileAuthenticator = Backend(
    "file", IAuthenticator, "lmm.aaa:fileBackend",
    "MS profiles from a TOML file, for setups without a RADIUS server",
)
radiusAuthenticator = Backend(
    "radius", IAuthenticator, "lmm.radius:radiusBackend",
    "RADIUS (PAP, Message-Authenticator) to servers in order; RFC 6572 profile attributes",
)

packetAttach = Backend(
    "packet", IAttachDetector, "lmm.mpa.attach:packetBackend",
    "AF_PACKET sockets on the access links: a frame from a new MAC is an attach",
)
explicitAttach = Backend(
    "explicit", IAttachDetector, "lmm.mpa.attach:explicitBackend",
    "AF_PACKET sockets on the access links; attaches reported on the control channel",
)
