# lmm's own backends. Declaring one imports nothing heavy: see lmm.backends.
from lmm.backends import Backend
from lmm.interfaces import IAttachDetector, IAuthenticator, IDHCPv6Relay, ITunnelDataPlane

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

udpRelay = Backend(
    "udp", IDHCPv6Relay, "lmm.mpa.dhcprelay:udpBackend",
    "the DHCPv6 relay's UDP port 547 on the MPA's address (RFC 8415 section 19)",
)

# The RFC 2473 tunnel data planes (lmm.dataplane, docs/dataplane.md).
seg6Tunnel = Backend(
    "seg6", ITunnelDataPlane, "lmm.dataplane.seg6:seg6Backend",
    "kernel SRv6 as IPv6-in-IPv6 (encap.red, End.DT6); needs CONFIG_IPV6_SEG6_LWTUNNEL",
)
ip6tnlTunnel = Backend(
    "ip6tnl", ITunnelDataPlane, "lmm.dataplane.ip6tnl:ip6tnlBackend",
    "kernel ip6tnl devices (ip6ip6), one per peer; needs CONFIG_IPV6_TUNNEL",
)
userspaceTunnel = Backend(
    "userspace", ITunnelDataPlane, "lmm.dataplane.userspace:userspaceBackend",
    "a TUN device and a raw protocol-41 socket in the daemon; any kernel with TUN",
)
autoTunnel = Backend(
    "auto", ITunnelDataPlane, "lmm.dataplane:autoBackend",
    "seg6 where the kernel has it, else userspace",
)
