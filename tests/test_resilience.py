"""
Restarts on the real kernel (issue 13): the lab's LMAP or an MPA killed with
SIGKILL while a Linux MS pings the CN every 20 ms through seg6 tunnels, and
started again. What is checked: the LMAP's Binding Cache before and after,
the heartbeats that saw the restart (each daemon's C{peers}), what the peer
did about it, and the pings the MS lost, printed with the time to recover.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from lmm.lab import timeline as tl
from lmm.lab.netns import waitFor
from lmm.lab.topology import Lab, Station
from tests.test_lab import LabTestCase

PING_INTERVAL = 0.02


class Pinger:
    """C{ping -D} from the MS to the CN in the background; what it lost."""

    def __init__(self, lab: Lab, station: Station) -> None:
        self.process = station.namespace.popen(
            ["ping", "-n", "-D", "-i", f"{PING_INTERVAL:g}", "-W", "1", lab.topology.cn],
            stdout=subprocess.PIPE, text=True)

    def stop(self) -> tl.PingRecord:
        time.sleep(0.1)  # the last reply's room
        stopped = time.time()
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=10)
        record = tl.parsePing(out, PING_INTERVAL)
        record.stoppedAt = stopped
        return record


def lossAndGap(record: tl.PingRecord) -> tuple[int, float]:
    """Pings lost, and the longest time between two replies."""
    arrivals = sorted(sent + rtt for sent, rtt in record.replies.values())
    gap = max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0)
    return len(record.lost()), gap


class RestartTests(LabTestCase):
    def start(self) -> tuple[Lab, Station]:
        lab = self.makeLab(self.topology(handovers=[], stations=self.topology().stations[:1]))
        [spec] = lab.topology.stations
        station = lab.attach(spec)
        lab.waitUsable(station)
        self.checkPing(lab, station)
        return lab, station

    def report(self, what: str, lost: int, gap: float, **figures: Any) -> None:
        extra = "".join(f", {k} {v}" for k, v in figures.items())
        sys.stderr.write(f"\n{what}: {lost} pings lost (every {PING_INTERVAL * 1000:.0f} ms), "
                         f"longest gap {gap * 1000:.0f} ms{extra}\n")

    def test_lmapKilled(self) -> None:
        """kill -9 of the LMAP and a restart: its Binding Cache comes back the
        same (SQLite), its tunnels with it; the MPA sees the new Restart
        Counter by heartbeat and registers its visitor again at once; the MS
        is served again within 3 s of the restart (the lab's heartbeats)."""
        lab, station = self.start()
        before = lab.bindings()
        self.assertEqual(len(before), 1)
        pinger = Pinger(lab, station)
        time.sleep(0.3)
        killed = lab.crash("lmap")
        time.sleep(0.5)
        ready = lab.restart("lmap")
        waitFor(lambda: lab.counters("mpa1").get("registration.lmap-restarted"), 3, 0.02,
                what="the MPA to see the LMAP's restart")
        seen = time.time()
        time.sleep(0.5)
        record = pinger.stop()
        after = lab.bindings()
        self.assertEqual([(b["nai"], b["localAddress"], b["careOfAddress"]) for b in after],
                         [(b["nai"], b["localAddress"], b["careOfAddress"]) for b in before])
        [peer] = lab.ask("mpa1", "peers")["peers"]
        self.assertEqual((peer["peer"], peer["state"], peer["restarts"]),
                         (lab.topology.lmap, "up", 1))
        self.assertIn("1 binding(s) taken up", lab.daemons["lmap"].log())
        self.checkPing(lab, station)
        lost, gap = lossAndGap(record)
        self.report("LMAP killed for 0.5 s", lost, gap,
                    **{"restart seen after": f"{(seen - ready) * 1000:.0f} ms",
                       "down": f"{(ready - killed) * 1000:.0f} ms"})
        self.assertLess(seen - ready, 3.0)

    def test_mpaKilled(self) -> None:
        """kill -9 of the serving MPA and a restart: the LMAP sees the new
        Restart Counter by heartbeat and removes the binding that MPA forgot;
        the MS's next packets register it again there, same address."""
        lab, station = self.start()
        [before] = lab.bindings()
        pinger = Pinger(lab, station)
        time.sleep(0.3)
        lab.crash("mpa1")
        time.sleep(0.3)
        ready = lab.restart("mpa1")
        waitFor(lambda: lab.registered("mpa1", station.spec.mac), 5, 0.02,
                what="the MS registered again at the restarted MPA")
        back = time.time()
        time.sleep(0.5)
        record = pinger.stop()
        counters = lab.lmapCounters()
        self.assertEqual(counters.get("heartbeat.peer-restarted"), 1)
        # The binding the restarted MPA forgot went (and was revoked), before
        # the MS's packets registered it again.
        self.assertEqual(counters.get("binding.peer-restarted"), 1)
        peers = {p["peer"]: p for p in lab.ask("lmap", "peers")["peers"]}
        self.assertEqual(peers[lab.topology.mpas[0].address]["restarts"], 1)
        [after] = lab.bindings()
        self.assertEqual((after["nai"], after["localAddress"], after["careOfAddress"]),
                         (before["nai"], before["localAddress"], before["careOfAddress"]))
        self.checkPing(lab, station)
        lost, gap = lossAndGap(record)
        self.report("MPA killed for 0.3 s", lost, gap,
                    **{"registered again after": f"{(back - ready) * 1000:.0f} ms"})
