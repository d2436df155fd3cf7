#!/usr/bin/env python3
"""
Coverage-guided fuzzing (atheris, libFuzzer's engine) of every parser the
daemons expose to the network, each run as the daemon runs it: what the
daemon catches is an expected refusal, anything else is a crash.

    .venv/bin/python bench/fuzz.py [--runs N] [--target NAME ...] [--seconds S]

Targets:
  mh         Mobility Header messages (both wire profiles), the protected
             codec's checks (lmm.security) on the same bytes, and its fast
             path (lmm._hmac) against its general decode on them signed
  nd         access-link frames: Ethernet, IPv6, ICMPv6 ND/MLD, hop-by-hop
  dhcp6      DHCPv6 client and relay messages (lmm.dhcp6)
  radius     RADIUS replies past the Response Authenticator (lmm.radius: the
             attribute walk, pyrad's parse, Message-Authenticator, the profile),
             and lmm's ReplyDecoder against pyrad's packet on them (the same
             profile or error, the same Reply-Message)
  rtnetlink  RTM_NEWLINK/DELLINK messages (lmm.mpa.attach.parseLinkMessages)

Each target starts from seeds (valid inputs built by lmm's own encoders) and
runs in a child process of its own (libFuzzer ends a process at
its first crash); the parent prints, per target, the inputs executed, the
coverage libFuzzer counted (edges of the instrumented lmm modules) and the
crashes, and one met / MISSED line: no crash in any target. A crash's input
is kept in the work folder and named.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, top)

TARGETS = ("mh", "nd", "dhcp6", "radius", "rtnetlink")


# --- the targets (run in the child, under atheris) ----------------------------


def mhTarget() -> Callable[[bytes], None]:
    from lmm import mh, security

    association = security.MobilitySecurityAssociation(
        "2001:db8::2", 1000, security.HMAC_SHA256_128, bytes(32))
    codec = security.SignalingCodec(mh.DRAFT, "2001:db8::1", "lmap",
                                    security.SecurityAssociations([association]))

    def run(data: bytes) -> None:
        for profile in (mh.DRAFT, mh.RFC5213):
            try:
                message = mh.decode(data, profile)
            except mh.MobilityHeaderError:
                continue
            # What decodes must encode again (the daemons re-encode replies' parts).
            try:
                mh.encode(message, profile)
            except ValueError:
                pass
        try:
            codec.decode(data, "2001:db8::2", 0.0)
        except mh.MobilityHeaderError:
            pass
        # The codec's fast path (lmm._hmac) and its general decode agree on
        # every input, made authentic first: signed where lmm's layout puts
        # the MAC, so that odd layouts from a peer get past the MAC.
        end = (data[1] + 1) * 8 if len(data) >= 2 else 0
        at = end - 7 - authenticator.length
        if 6 <= at and end <= len(data):
            covered = at + 7
            signed = (data[:covered] + authenticator(data[:4] + b"\0\0" + data[6:covered])
                      + data[covered + authenticator.length:])
            if outcome(codec.decode, signed) != outcome(codec._decodeSealed, signed):
                raise AssertionError("the fast path and the general decode disagree")

    def outcome(decode: Callable[[bytes, str, float], object], data: bytes) -> object:
        try:
            return decode(data, "2001:db8::2", 0.0)
        except mh.MobilityHeaderError as e:
            return type(e), str(e)

    authenticator = codec._signing["2001:db8::2"]
    return run


def ndTarget() -> Callable[[bytes], None]:
    from lmm import nd

    def run(data: bytes) -> None:
        try:
            frame = nd.decodeFrame(data)
        except nd.NDError:
            return
        frame.dadTarget  # noqa: B018 (what the agent reads of every frame)
        frame.isDHCPv6  # noqa: B018

    return run


def dhcp6Target() -> Callable[[bytes], None]:
    from lmm import dhcp6

    def run(data: bytes) -> None:
        try:
            message = dhcp6.decode(data)
        except dhcp6.DHCPv6Error:
            return
        dhcp6.encode(message)

    return run


def radiusTarget() -> Callable[[bytes], None]:
    from pyrad import packet as rpacket

    from lmm import aaa, radius

    dictionary = radius.loadDictionary()
    decoder = radius.ReplyDecoder.forDictionary(dictionary)
    assert decoder is not None
    secret, request = b"fuzzing", bytes(range(16))

    def outcome(reply: Any) -> tuple[Any, str | None]:
        """The profile (or the text of its ValueError) and the Reply-Message."""
        message = radius.replyMessage(reply)
        try:
            return radius.profileFromReply(reply, b"ms@lmm.test"), message
        except ValueError as e:
            return str(e), message

    def run(data: bytes) -> None:
        # Past what a forger cannot pass: the Length field and the Response
        # Authenticator are made right, so that the fuzzer reaches the parsers.
        if len(data) < radius.HEADER_LENGTH:
            return
        data = data[:radius.MAX_PACKET_LENGTH]
        data = data[:2] + struct.pack("!H", len(data)) + bytes(16) + data[radius.HEADER_LENGTH:]
        data = (data[:4] + radius.responseAuthenticator(data, request, secret)
                + data[radius.HEADER_LENGTH:])
        try:
            attributes = radius.rawAttributes(data)
            reply = rpacket.AuthPacket(packet=data, secret=secret, dict=dictionary)
        except (ValueError, rpacket.PacketError):
            return
        radius.checkMessageAuthenticator(data, request, secret)
        theirs = outcome(reply)
        ours = outcome(decoder.decode(data[0], attributes))
        if ours != theirs:
            raise AssertionError(f"ReplyDecoder {ours!r}, pyrad {theirs!r}")
        profile = theirs[0]
        if isinstance(profile, str):  # profileFromReply's ValueError
            return
        aaa.checkProfile(profile, True)

    return run


def rtnetlinkTarget() -> Callable[[bytes], None]:
    from lmm.mpa.attach import parseLinkMessages

    def run(data: bytes) -> None:
        parseLinkMessages(data)

    return run


# --- seeds: one valid input of each kind, so that mutations start past the first checks ---


def mhSeeds() -> list[bytes]:
    from lmm import mh, security

    association = security.MobilitySecurityAssociation(
        "2001:db8::1", 1000, security.HMAC_SHA256_128, bytes(32))
    mpa = security.SignalingCodec(mh.DRAFT, "2001:db8::2", "mpa",
                                  security.SecurityAssociations([association]))
    nai = mh.MobileNodeIdentifier(b"ms1@lmm.test")
    local = mh.LocalAddress("2001:db8:1::5", 64)
    messages: list[mh.MobilityMessage] = [
        mh.ProxyBindingUpdate(1, 400, [nai, local]),
        mh.ProxyBindingUpdate(2, 400, [nai, mh.BindingCacheConfirmation()]),
        mh.BindingAck(0, 1, 400, (local,), proxy=True),
        mh.BindingRevocationIndication(3, 4, (nai, local), proxy=True),
        mh.BindingRevocationAck(0, 3, (), proxy=True),
        mh.Heartbeat(9),
        mh.BindingError(1),
    ]
    return ([mh.encode(m) for m in messages]
            + [mpa.encode(m, "2001:db8::1", 0.0) for m in messages[:6]])


def ndSeeds() -> list[bytes]:
    from lmm import dhcp6, nd

    mac, router = "02:11:22:33:44:55", "02:00:5e:00:53:01"
    ll, rll = nd.linkLocalFromMac(mac), nd.linkLocalFromMac(router)
    solicit = dhcp6.encode(dhcp6.Message(dhcp6.MessageType.SOLICIT, 0x123456,
                                         (dhcp6.ClientId(dhcp6.duidLL(mac)),)))
    return [
        nd.buildRouterSolicitation(mac, ll),
        nd.buildRouterSolicitation(mac, nd.UNSPECIFIED),
        nd.buildRouterAdvertisement(router, mac, rll, ll,
                                    (nd.PrefixInformation("2001:db8:1::"),), mtu=1460),
        nd.buildNeighborSolicitation(mac, None, nd.UNSPECIFIED, None, "2001:db8:1::5"),
        nd.buildNeighborAdvertisement(router, mac, rll, ll),
        nd.buildFrame(mac, "33:33:00:00:00:16", nd.UNSPECIFIED, nd.ALL_MLDV2_ROUTERS,
                      nd.MLDv2Report((nd.MulticastAddressRecord(4, "ff02::1:ff12:3456"),)),
                      1, True),
        nd.buildUDPFrame(mac, "33:33:00:01:00:02", ll, "ff02::1:2", 546, 547, solicit),
    ]


def dhcp6Seeds() -> list[bytes]:
    from lmm import dhcp6

    client = dhcp6.ClientId(dhcp6.duidLL("02:11:22:33:44:55"))
    solicit = dhcp6.Message(dhcp6.MessageType.SOLICIT, 0x123456,
                            (client, dhcp6.ElapsedTime(0), dhcp6.IANA(1)))
    reply = dhcp6.Message(dhcp6.MessageType.REPLY, 0x123456, (
        client, dhcp6.IANA(1, 100, 200, (dhcp6.IAAddress("2001:db8:1::5", 300, 400),))))
    return [dhcp6.encode(solicit), dhcp6.encode(reply),
            dhcp6.encode(dhcp6.RelayForward("2001:db8:1::1", "fe80::1", dhcp6.encode(solicit),
                                            b"acc0"))]


def radiusSeeds() -> list[bytes]:
    from pyrad import packet as rpacket

    from lmm import radius

    dictionary = radius.loadDictionary()
    reply = rpacket.AuthPacket(code=rpacket.AccessAccept, id=1, secret=b"fuzzing",
                               authenticator=bytes(range(16)), dict=dictionary)
    reply["Session-Timeout"] = 600
    reply["LMM-Address-Mode"] = "slaac"
    return [reply.ReplyPacket()]


def rtnetlinkSeeds() -> list[bytes]:
    attributes = b""
    for kind, value in ((3, b"acc0\x00"), (1, bytes.fromhex("021122334455")), (16, b"\x06")):
        attribute = struct.pack("=HH", 4 + len(value), kind) + value
        attributes += attribute + bytes(-len(attribute) % 4)
    body = struct.pack("=BxHiII", 10, 1, 7, 0x1043, 0) + attributes
    return [struct.pack("=IHHII", 16 + len(body), 16, 0, 1, 0) + body]


SEEDS = {"mh": mhSeeds, "nd": ndSeeds, "dhcp6": dhcp6Seeds, "radius": radiusSeeds,
         "rtnetlink": rtnetlinkSeeds}

BUILDERS = {"mh": mhTarget, "nd": ndTarget, "dhcp6": dhcp6Target, "radius": radiusTarget,
            "rtnetlink": rtnetlinkTarget}
MODULES = {"mh": ["lmm.mh", "lmm.inet", "lmm.security"], "nd": ["lmm.nd", "lmm.inet"],
           "dhcp6": ["lmm.dhcp6", "lmm.inet"], "radius": ["lmm.radius", "lmm.aaa"],
           "rtnetlink": ["lmm.mpa.attach"]}


def child(target: str, libFuzzerArgs: list[str]) -> None:
    import importlib

    import atheris

    # lmm's modules, and pyrad's parser for the RADIUS replies it reads.
    with atheris.instrument_imports(include=["lmm", "pyrad"] if target == "radius" else ["lmm"]):
        for name in MODULES[target]:
            importlib.import_module(name)
    run = BUILDERS[target]()
    atheris.Setup([sys.argv[0], *libFuzzerArgs], run)
    atheris.Fuzz()


# --- the parent ------------------------------------------------------------------


def fuzz(target: str, runs: int, seconds: float, work: str) -> dict[str, object]:
    corpus = os.path.join(work, f"corpus-{target}")
    os.makedirs(corpus, exist_ok=True)
    for index, seed in enumerate(SEEDS[target]()):
        with open(os.path.join(corpus, f"seed-{index}"), "wb") as f:
            f.write(seed)
    args = [f"-runs={runs}", "-print_final_stats=1", f"-artifact_prefix={work}/crash-{target}-",
            "-max_len=1500", "-rss_limit_mb=2048"]
    if seconds:
        args.append(f"-max_total_time={int(seconds)}")
    started = time.monotonic()
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", target,
                             "--", *args, corpus], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    coverage = re.findall(r"\bcov: (\d+)", output)
    crashes = re.findall(r"Test unit written to (\S+)", output)
    return {
        "executed": int(executed[-1]) if executed else 0,
        "coverage": int(coverage[-1]) if coverage else 0,
        "crashes": crashes if crashes or result.returncode == 0 else [f"exit {result.returncode}"],
        "seconds": elapsed,
        "output": output,
    }


def main() -> int:
    if "--child" in sys.argv:
        index = sys.argv.index("--child")
        target = sys.argv[index + 1]
        rest = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
        child(target, rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seconds", type=float, default=0, help="at most this long per target")
    parser.add_argument("--target", action="append", choices=TARGETS,
                        help="one target (again for more); default: all")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lmm-fuzz-")
    print(f"lmm fuzzing with atheris: {args.runs} inputs per target (work folder {work})",
          flush=True)
    failed = []
    for target in args.target or TARGETS:
        r = fuzz(target, args.runs, args.seconds, work)
        crashes = r["crashes"]
        assert isinstance(crashes, list)
        print(f"  {target:10} {r['executed']:>10} inputs  coverage {r['coverage']:>5}  "
              f"crashes {len(crashes)}  ({r['seconds']:.0f} s)", flush=True)
        if crashes:
            failed.append(target)
            output = r["output"]
            assert isinstance(output, str)
            print("    " + "\n    ".join(output.strip().splitlines()[-30:]))
            for path in crashes:
                print(f"    input kept: {path}")
    print(f"target no crash in any parser: {'MISSED' if failed else 'met'}"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
