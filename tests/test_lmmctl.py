"""
lmmctl (L{lmm.ctl}) and the commands it drives: its parsing and tables
(pure), the cores' entry points behind C{bindings}, C{visitors}, C{revoke}
and C{deregister} (L{lmm.lmap.anchor}, L{lmm.mpa.agent}), what it imports,
and, through a lab (real twistd daemons, FreeRADIUS when installed, a Linux
host as the MS, the kernel's tunnels), the real C{.venv/bin/lmmctl} run with
subprocess: listings filtered by NAI, address and MPA match what the daemons
hold, and a revocation at the LMAP and a deregistration at the MPA remove
the binding at both ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv6Network
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import ctl, mh
from lmm.actions import Note, RemoveTunnel, SendMessage
from lmm.lab.netns import waitFor
from lmm.lab.topology import MSSpec, randomMac
from lmm.lmap.cache import BindingCacheEntry
from lmm.mpa.visitor import AttachEvent, VisitorState
from tests.test_lab import LabTestCase
from tests.test_lmap_anchor import ADDRESS, MPA1, MPA2, NAI, POOL, T0, makeAnchor, pbu, pbu5213
from tests.test_mpa_agent import IFACE, LMAP, MS_ADDR, MS_MAC, makeAgent, register

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LMMCTL = os.path.join(os.path.dirname(sys.executable), "lmmctl")


class FilterTests(SynchronousTestCase):
    """What the daemons' listing commands take: KEY=VALUE words, a limit, a prefix."""

    def test_filters(self) -> None:
        self.assertEqual(ctl.parseFilters(["nai=a@b", "MPA=fd00::2"], ("nai", "mpa")),
                         {"nai": "a@b", "mpa": "fd00::2"})
        self.assertEqual(ctl.parseFilters([], ("nai",)), {})
        # A value keeps its own '=' signs.
        self.assertEqual(ctl.parseFilters(["nai=x=y"], ("nai",)), {"nai": "x=y"})

    def test_badFilters(self) -> None:
        for words, words_in_error in ((["nai"], "KEY=VALUE"), (["mac=x"], "unknown filter 'mac'"),
                                      (["nai="], "needs a value"),
                                      (["nai=a", "nai=b"], "given twice")):
            with self.assertRaises(ValueError) as caught:
                ctl.parseFilters(words, ("nai", "mpa"))
            self.assertIn(words_in_error, str(caught.exception))

    def test_limit(self) -> None:
        self.assertEqual(ctl.parseLimit(None), ctl.DEFAULT_LIMIT)
        self.assertEqual(ctl.parseLimit("5"), 5)
        self.assertIsNone(ctl.parseLimit("0"))
        self.assertRaises(ValueError, ctl.parseLimit, "-1")
        self.assertRaises(ValueError, ctl.parseLimit, "many")

    def test_counters(self) -> None:
        counters = {"pbu.accepted": 3, "bri.sent": 1, "pbu.rejected.129": 2}
        self.assertEqual(list(ctl.selectCounters(counters)),
                         ["bri.sent", "pbu.accepted", "pbu.rejected.129"])
        self.assertEqual(ctl.selectCounters(counters, "pbu."),
                         {"pbu.accepted": 3, "pbu.rejected.129": 2})
        self.assertEqual(ctl.selectCounters(counters, "nothing"), {})


class ArgumentTests(SynchronousTestCase):
    """Where lmmctl finds the socket: -s, then -c's control.socket, then $LMMCTL_SOCKET."""

    def config(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_socket(self) -> None:
        env = {"LMMCTL_SOCKET": "/run/env.sock"}
        self.assertEqual(ctl.parseArguments(["-s", "/run/a.sock", "bindings", "nai=x"], env),
                         ("/run/a.sock", ["bindings", "nai=x"], False, ctl.CLI_TIMEOUT))
        self.assertEqual(ctl.parseArguments(["counters", "--json"], env),
                         ("/run/env.sock", ["counters"], True, ctl.CLI_TIMEOUT))
        config = self.config('[control]\nsocket = "/run/lmm-lmap.sock"\n')
        self.assertEqual(ctl.parseArguments(["-c", config, "--timeout", "2", "peers"], env)[::3],
                         ("/run/lmm-lmap.sock", 2.0))
        # -s wins over -c, which wins over the environment.
        self.assertEqual(ctl.parseArguments(["-c", config, "-s", "/x", "peers"], env)[0], "/x")

    def test_errors(self) -> None:
        cases: list[tuple[list[str], dict[str, str], str]] = [
            ([], {}, "no command"),
            (["counters"], {}, "no control socket: give -s SOCKET or -c CONFIG.toml"),
            (["-s"], {}, "-s needs a value"),
            (["--verbose", "counters"], {}, "unknown option --verbose"),
            (["--timeout", "0", "-s", "/x", "counters"], {}, "--timeout expects seconds"),
            (["-c", self.config("[lmap]\n"), "counters"], {}, "key 'control.socket': not set"),
            (["-c", self.config("[control\n"), "counters"], {}, "not TOML"),
            (["-c", "/nonexistent/lmap.toml", "counters"], {}, "No such file"),
        ]
        for argv, env, words in cases:
            with self.assertRaises(ctl.UsageError) as caught:
                ctl.parseArguments(argv, env)
            self.assertIn(words, str(caught.exception), argv)

    def test_unreachable(self) -> None:
        """One line an operator can act on, and exit status 3."""
        path = os.path.abspath(self.mktemp())
        with self.assertRaises(ctl.Unreachable) as caught:
            ctl.request(path, "counters", 1.0)
        self.assertIn("no such socket: the daemon is not running", str(caught.exception))
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(path)  # a socket no one listens on: a daemon that died
        with self.assertRaises(ctl.Unreachable) as caught:
            ctl.request(path, "counters", 1.0)
        self.assertIn("connection refused", str(caught.exception))
        result = subprocess.run([sys.executable, "-m", "lmm.ctl", "-s", path, "counters"],
                                capture_output=True, text=True, cwd=_REPO)
        self.assertEqual(result.returncode, 3)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)


class FormatTests(SynchronousTestCase):
    """The tables and sentences lmmctl prints."""

    def test_duration(self) -> None:
        self.assertEqual([ctl.duration(s) for s in (0, 59.4, 60, 3599, 3600, 3725, 90061, -3)],
                         ["0s", "59s", "1m00s", "59m59s", "1h00m00s", "1h02m05s", "1d01h01m",
                          "-3s"])

    def test_bindings(self) -> None:
        answer = {"ok": True, "now": 1000.0, "matched": 1, "total": 3, "filtered": True,
                  "bindings": [{"nai": "ms1@lmm.test", "localAddress": "2001:db8::5/64",
                                "careOfAddress": "fd00::2", "lifetime": 3600,
                                "expires": 4587.0, "created": 988.0, "updated": 990.0,
                                "sequence": 7}]}
        lines = ctl.formatAnswer("bindings nai=ms1@lmm.test", answer).splitlines()
        self.assertEqual(lines[0].split()[:2], ["NAI", "ADDRESS/PREFIX"])
        self.assertEqual(lines[1].split(),
                         ["ms1@lmm.test", "2001:db8::5/64", "fd00::2", "1h00m00s", "59m47s",
                          "12s", "7"])
        self.assertEqual(lines[2], "Total number of bindings: 1 (of 3)")
        # More than the limit: says how to see all.
        answer.update(matched=1500, filtered=False)
        self.assertEqual(ctl.formatAnswer("bindings", answer).splitlines()[-1],
                         "Total number of bindings: 1500; the first 1 shown, limit=0 for all")
        answer.update(matched=0, bindings=[])
        self.assertEqual(ctl.formatAnswer("bindings", answer).splitlines(),
                         [ctl.formatAnswer("bindings", answer).splitlines()[0],
                          "Total number of bindings: 0"])

    def test_visitors(self) -> None:
        visitor = {"mac": "02:00:00:00:00:01", "interface": "eth1", "nai": "ms1@lmm.test",
                   "state": "registered", "localAddress": "2001:db8::5",
                   "lmapAddress": "fd00::1", "lifetime": "3600", "expires": "3700.000",
                   "lastStatus": "0", "pendingKind": "-", "failure": "-"}
        lines = ctl.formatAnswer("visitors", {"ok": True, "now": 100.0, "matched": 1,
                                              "visitors": [visitor]}).splitlines()
        self.assertEqual(lines[1].split(),
                         ["02:00:00:00:00:01", "eth1", "ms1@lmm.test", "registered",
                          "2001:db8::5", "fd00::1", "1h00m00s", "1h00m00s", "0", "-", "-"])
        self.assertEqual(lines[2], "Total number of visitors: 1")

    def test_actions(self) -> None:
        revoked = {"ok": True, "nai": "ms1@x", "address": "2001:db8::5/64", "mpa": "fd00::2",
                   "indication": True, "withoutRevocation": None}
        self.assertIn("Binding Revocation Indication sent",
                      ctl.formatAnswer("revoke ms1@x", revoked))
        revoked.update(indication=False, withoutRevocation="configured (revocation.disabled_for)")
        self.assertIn("here only: that MPA gets no revocations (configured",
                      ctl.formatAnswer("revoke ms1@x", revoked))
        deregistered = {"ok": True, "mac": "02:00:00:00:00:01", "nai": "ms1@x",
                        "interface": "eth1", "address": "2001:db8::5", "deregistered": True,
                        "lmap": "fd00::1"}
        self.assertIn("lifetime 0 sent to fd00::1 for 2001:db8::5",
                      ctl.formatAnswer("deregister ms1@x", deregistered))
        self.assertEqual(ctl.formatAnswer("attach eth1 02:00:00:00:00:01", {"ok": True}), "ok")

    def test_generic(self) -> None:
        """An answer of a command lmmctl has no form for (another daemon's
        version): one key: value line per field, records as a table."""
        answer = {"ok": True, "aaa": {"configured": "radius", "active": "file"},
                  "restart": ["mpa.address"], "live": True, "note": None,
                  "servers": [{"address": "::1", "port": 1812}, {"address": "::2", "port": 1812}]}
        self.assertEqual(ctl.formatAnswer("backends", answer).splitlines(), [
            "aaa:", "  configured: radius", "  active: file", "restart: mpa.address",
            "live: yes", "note: -", "servers:", "  ADDRESS  PORT", "  ::1      1812",
            "  ::2      1812"])

    def test_peers(self) -> None:
        answer = {"ok": True, "restartCounter": 4, "interval": 1.0, "timeout": 0.5,
                  "missedAllowed": 3, "peers": [
                      {"peer": "fd00::2", "state": "up", "missed": 0, "restartCounter": 9,
                       "restarts": 1, "lastHeard": 0.25}],
                  "withoutRevocation": {"fd00::3": "configured"}, "profileMismatches": {}}
        text = ctl.formatAnswer("peers", answer)
        self.assertIn("fd00::2  up     0       9                1         0s ago", text)
        self.assertIn("fd00::3: sent no revocations: configured", text)


class ImportTests(SynchronousTestCase):
    """lmmctl's path imports nothing heavy: no Twisted, no zope, no lmm module
    but lmm.ctl (the time it takes: bench/lmmctl.py)."""

    def test_light(self) -> None:
        code = ("import sys, lmm.ctl\n"
                "print('\\n'.join(sorted(sys.modules)))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=_REPO, check=True)
        modules = result.stdout.split()
        self.assertEqual([m for m in modules if m.startswith(("twisted", "zope", "typing"))],
                         [])
        self.assertEqual([m for m in modules if m.startswith("lmm")], ["lmm", "lmm.ctl"])


class AnchorTests(SynchronousTestCase):
    """The anchor's entry points behind bindings and revoke."""

    def setUp(self) -> None:
        self.anchor = makeAnchor()
        for i, (mpa, nai) in enumerate([(MPA1, NAI), (MPA2, b"ms2@example.net"),
                                        (MPA2, b"ms3@example.net")]):
            address = ADDRESS if nai == NAI else f"2001:db8:1::{0x20 + i:x}"
            self.anchor.receive(pbu(1, nai=nai, address=address), mpa, T0)
        self.assertEqual(len(self.anchor.store), 3)

    def naisOf(self, found: tuple[int, list[BindingCacheEntry]]) -> tuple[int, list[bytes]]:
        return found[0], [e.nai for e in found[1]]

    def test_find(self) -> None:
        find = self.anchor.findBindings
        self.assertEqual(self.naisOf(find(T0)),
                         (3, [NAI, b"ms2@example.net", b"ms3@example.net"]))
        self.assertEqual(self.naisOf(find(T0, nai=b"ms2@example.net")), (1, [b"ms2@example.net"]))
        self.assertEqual(self.naisOf(find(T0, nai=b"nobody")), (0, []))
        self.assertEqual(self.naisOf(find(T0, address=IPv6Network(ADDRESS + "/128"))),
                         (1, [NAI]))
        self.assertEqual(self.naisOf(find(T0, address=IPv6Network("2001:db8:1::99/128"))),
                         (0, []))
        self.assertEqual(self.naisOf(find(T0, address=IPv6Network("2001:db8:1::20/123"))),
                         (2, [b"ms2@example.net", b"ms3@example.net"]))
        self.assertEqual(self.naisOf(find(T0, mpa=MPA2)),
                         (2, [b"ms2@example.net", b"ms3@example.net"]))
        # Every filter given must match.
        self.assertEqual(self.naisOf(find(T0, nai=NAI, mpa=MPA2)), (0, []))
        # The limit: how many matched, the first ones by NAI.
        self.assertEqual(self.naisOf(find(T0, mpa=MPA2, limit=1)), (2, [b"ms2@example.net"]))
        # An expired binding is gone, the timer or not.
        self.assertEqual(find(T0 + 4000)[0], 0)

    def test_findPrefix(self) -> None:
        """Per-node prefixes (RFC 5213): an address inside the MS's prefix finds it."""
        anchor = makeAnchor(profile=mh.RFC5213, prefixes=(POOL,))
        anchor.receive(pbu5213(1), MPA1, T0)
        [entry] = anchor.store
        inside = IPv6Network(entry.localAddress).network_address + 0x1234
        self.assertEqual(self.naisOf(anchor.findBindings(T0, address=IPv6Network(inside))),
                         (1, [NAI]))

    def test_revoke(self) -> None:
        """The binding goes with its tunnel; its MPA gets an indication
        (administrative reason), retransmitted until acknowledged."""
        actions = self.anchor.revoke(NAI, T0 + 10)
        self.assertIsNone(self.anchor.store.get(NAI))
        [remove] = [a for a in actions if isinstance(a, RemoveTunnel)]
        self.assertEqual(remove.binding.mobileAddress, ADDRESS)
        [send] = [a for a in actions if isinstance(a, SendMessage)]
        message = send.message
        assert isinstance(message, mh.BindingRevocationIndication)
        self.assertEqual((send.destination, message.trigger),
                         (MPA1, mh.RevocationTrigger.ADMINISTRATIVE_REASON))
        self.assertEqual(message.option(mh.MobileNodeIdentifier).identifier, NAI)  # type: ignore[union-attr]
        note = actions[-1]
        assert isinstance(note, Note)
        self.assertEqual((note.event, note.fields["indication"], note.fields["mpa"]),
                         ("binding.revoked", True, MPA1))
        self.assertEqual(self.anchor.counters["binding.revoked"], 1)
        # Retransmitted, as a handover's revocation is.
        due = self.anchor.nextDeadline()
        assert due is not None
        again = [a for a in self.anchor.tick(due) if isinstance(a, SendMessage)]
        self.assertEqual([a.message for a in again], [message])
        # The others are untouched.
        self.assertEqual(len(self.anchor.store), 2)

    def test_revokeWithoutRevocation(self) -> None:
        """An MPA that gets no revocations: removed here only, and said so."""
        anchor = makeAnchor(withoutRevocation=[IPv6Network(MPA1 + "/128")])
        anchor.receive(pbu(1), MPA1, T0)
        actions = anchor.revoke(NAI, T0 + 1)
        self.assertEqual([type(a) for a in actions], [RemoveTunnel, Note])
        note = actions[-1]
        assert isinstance(note, Note)
        self.assertEqual((note.fields["indication"], note.fields["withoutRevocation"]),
                         (False, "configured (revocation.disabled_for)"))
        self.assertEqual(len(anchor.store), 0)

    def test_revokeUnknown(self) -> None:
        actions = self.anchor.revoke(b"nobody", T0)
        self.assertEqual([(a.event, a.fields) for a in actions if isinstance(a, Note)],
                         [("binding.revoke-unknown", {"nai": "nobody"})])
        # An expired one is expired, not revoked.
        actions = self.anchor.revoke(NAI, T0 + 4000)
        self.assertEqual([a.event for a in actions if isinstance(a, Note)],
                         ["binding.expired", "binding.revoke-unknown"])
        self.assertEqual(self.anchor.counters["binding.revoked"], 0)


class AgentTests(SynchronousTestCase):
    """The agent's entry points behind visitors and deregister."""

    def test_deregister(self) -> None:
        """By MAC or by NAI: a PBU with lifetime 0 to the LMAP, the tunnel
        removed, the visitor out of the list; as a detach."""
        for name in (MS_MAC.upper(), None):
            agent = makeAgent()
            visitor = register(self, agent)
            nai = None if name else visitor.nai
            actions = agent.deregister(T0 + 5, mac=name, nai=nai)
            [send] = [a for a in actions if isinstance(a, SendMessage)]
            message = send.message
            assert isinstance(message, mh.BindingUpdate)
            self.assertEqual((send.destination, message.lifetime), (LMAP, 0))
            self.assertEqual([a.binding.mobileAddress for a in actions
                              if isinstance(a, RemoveTunnel)], [MS_ADDR])
            self.assertIsNone(agent.visitors.byMac(MS_MAC))
            note = actions[-1]
            assert isinstance(note, Note)
            self.assertEqual((note.event, note.fields["deregistered"], note.fields["lmap"]),
                             ("visitor.deregistered", True, LMAP))
            self.assertEqual(agent.counters["visitor.deregistered"], 1)
            # Still deregistering: listed, and a second deregister says so.
            self.assertEqual([v.state for v in agent.findVisitors()[1]],
                             [VisitorState.DEREGISTERING])
            again = agent.deregister(T0 + 6, nai=visitor.nai)
            self.assertEqual([(a.event, a.fields["leaving"]) for a in again
                              if isinstance(a, Note)], [("visitor.deregister-unknown", True)])

    def test_deregisterUnknown(self) -> None:
        agent = makeAgent()
        actions = agent.deregister(T0, mac="02:00:00:00:00:99")
        self.assertEqual([a.event for a in actions if isinstance(a, Note)],
                         ["visitor.deregister-unknown"])
        self.assertEqual([a for a in actions if not isinstance(a, Note)], [])

    def test_find(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        other = "02:11:22:33:44:66"
        agent.attach(AttachEvent(IFACE, other, None), T0)
        assert visitor.nai is not None
        cases: list[tuple[dict[str, Any], list[str]]] = [
            ({}, [MS_MAC, other]),
            ({"nai": visitor.nai}, [MS_MAC]),
            ({"mac": other.upper()}, [other]),
            ({"address": IPv6Network(MS_ADDR + "/128")}, [MS_MAC]),
            ({"address": IPv6Network("2001:db8:1::/64")}, [MS_MAC]),
            ({"address": IPv6Network("2001:db8:9::/64")}, []),
            ({"interface": "acc0", "nai": b"nobody"}, []),
            ({"limit": 1}, [MS_MAC]),
        ]
        for filters, macs in cases:
            matched, found = agent.findVisitors(**filters)
            self.assertEqual([v.mac for v in found], macs, filters)
            self.assertEqual(matched, 2 if filters == {"limit": 1} else len(macs))


class LmmctlLabTests(LabTestCase):
    """The real lmmctl against the lab's daemons (attach detection explicit,
    as a Wi-Fi controller drives it: an MS revoked or deregistered stays
    gone until its next association report)."""

    def lmmctl(self, *args: str, status: int = 0) -> str:
        result = subprocess.run([LMMCTL, *args], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, status, f"lmmctl {' '.join(args)}: {result.stderr}")
        return result.stdout if status == 0 else result.stderr

    def answer(self, *args: str) -> dict[str, object]:
        text = self.lmmctl(*args, "--json")
        answer: dict[str, object] = json.loads(text)
        return answer

    def test_listAndRemove(self) -> None:
        if not os.path.exists(LMMCTL):
            raise SkipTest(f"no {LMMCTL}: run scripts/setup (it installs the console script)")
        one, two = MSSpec("ms1", randomMac(), "mpa1"), MSSpec("ms2", randomMac(), "mpa2")
        # auto: the kernel's tunnels where it has them (this test is about
        # the control channel, not a data plane), the userspace one otherwise.
        topology = replace(self.topology(stations=[one, two], handovers=[]), tunnel="auto",
                           mpaOverrides={"attach.backend": "explicit"})
        lab = self.makeLab(topology)
        first, second = lab.attach(one), lab.attach(two)
        lab.waitUsable(first, second)
        waitFor(lambda: len(lab.bindings()) == 2, 5, 0.05, what="both bindings")
        lmap = lab.controlPath("lmap")
        mpa1, mpa2 = (lab.topology.mpa(n).address for n in ("mpa1", "mpa2"))

        # The Binding Cache: a table, a count line; filtered by the daemon.
        text = self.lmmctl("-s", lmap, "bindings")
        self.assertIn("Total number of bindings: 2", text)
        for spec, mpa in ((one, mpa1), (two, mpa2)):
            [row] = [line for line in text.splitlines() if line.startswith(spec.nai)]
            self.assertEqual(row.split()[2], mpa)
        for filters, nais in (([f"nai={one.nai}"], [one.nai]),
                              ([f"address={second.address}"], [two.nai]),
                              ([f"mpa={mpa2}"], [two.nai]),
                              ([f"nai={one.nai}", f"mpa={mpa2}"], [])):
            answer = self.answer("-s", lmap, "bindings", *filters)
            self.assertEqual([b["nai"] for b in answer["bindings"]], nais,  # type: ignore[attr-defined]
                             filters)
            self.assertEqual((answer["matched"], answer["total"]), (len(nais), 2))
        bindings = self.answer("-s", lmap, "bindings", f"nai={one.nai}")["bindings"]
        assert isinstance(bindings, list)
        [binding] = bindings
        self.assertEqual(binding["localAddress"].split("/")[0], first.address)
        self.assertEqual(binding["careOfAddress"], mpa1)

        # The Visitor List, the socket from the MPA's configuration file.
        mpa1Config = lab.path("mpa1.toml")
        text = self.lmmctl("-c", mpa1Config, "visitors", f"nai={one.nai}")
        self.assertIn("Total number of visitors: 1", text)
        self.assertIn(f"{one.mac}", text)
        self.assertIn("registered", text)
        answer = self.answer("-c", mpa1Config, "visitors", f"address={first.address}")
        self.assertEqual([(v["mac"], v["localAddress"]) for v in answer["visitors"]],  # type: ignore[attr-defined]
                         [(one.mac, first.address)])
        self.assertEqual(self.answer("-c", mpa1Config, "visitors", f"nai={two.nai}")["matched"],
                         0)
        # Counters by prefix, the environment's socket.
        os.environ[ctl.SOCKET_VARIABLE] = lmap
        self.addCleanup(os.environ.pop, ctl.SOCKET_VARIABLE, None)
        counters = self.answer("counters", "pbu.")["counters"]
        assert isinstance(counters, dict)
        self.assertTrue(counters and all(k.startswith("pbu.") for k in counters), counters)
        self.assertGreaterEqual(counters["pbu.accepted"], 2)

        # Errors: the daemon's refusal (status 1), no daemon (status 3).
        self.assertIn("no binding of 'nobody@lmm.test'",
                      self.lmmctl("-s", lmap, "revoke", "nobody@lmm.test", status=1))
        self.assertIn("unknown filter 'colour'",
                      self.lmmctl("-s", lmap, "bindings", "colour=red", status=1))
        self.assertIn("no such socket",
                      self.lmmctl("-s", lab.path("none.sock"), "counters", status=3))

        # Revocation at the LMAP: gone here, revoked at MPA1 (acknowledged), no tunnels.
        text = self.lmmctl("-s", lmap, "revoke", one.nai)
        self.assertIn("Binding Revocation Indication sent", text)
        self.assertNotIn(one.nai, [b["nai"] for b in lab.bindings()])
        waitFor(lambda: not [v for v in lab.visitors("mpa1") if v["mac"] == one.mac], 5, 0.05,
                what="MPA1 to drop the revoked visitor")
        waitFor(lambda: lab.lmapCounters().get("bri.acknowledged", 0) >= 1, 5, 0.05,
                what="the revocation's acknowledgement")
        self.assertEqual(lab.counters("mpa1").get("visitor.revoked"), 1)
        self.checkTunnels(lab, first, None)

        # Deregistration at MPA2: a PBU with lifetime 0, the LMAP's binding gone.
        text = self.lmmctl("-c", lab.path("mpa2.toml"), "deregister", two.mac)
        self.assertIn(f"deregistered {two.nai}", text)
        waitFor(lambda: lab.bindings() == [], 5, 0.05, what="the LMAP to drop the binding")
        waitFor(lambda: lab.visitors("mpa2") == [], 5, 0.05,
                what="MPA2's deregistration to be answered")
        self.assertEqual(lab.lmapCounters().get("pbu.deregistered"), 1)
        self.checkTunnels(lab, second, None)
        self.assertIn("Total number of bindings: 0", self.lmmctl("-s", lmap, "bindings"))
