"""
The RFC 2473 IPv6-in-IPv6 data plane between MPA and LMAP (draft 7.3, 8.3,
9.2), in three interchangeable backends (docs/dataplane.md):

  - C{seg6}: the kernel's SRv6 (C{encap seg6 mode encap.red}, End.DT6);
  - C{ip6tnl}: kernel ip6tnl devices, one per peer;
  - C{userspace}: a TUN device and a raw socket of protocol 41, in the daemon.

C{auto} picks seg6 where the kernel has it, else userspace. Each is built by
a factory C{f(settings, reactor)} that starts it in the calling thread's
network namespace. L{swap} moves bindings from one backend to another while
traffic flows.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from lmm.dataplane.common import DataPlaneError, KernelLacks
from lmm.interfaces import IReactor
from lmm.logs import Logger
from lmm.tunnel import TunnelBinding

__all__ = ["DataPlaneError", "KernelLacks", "autoBackend", "swap"]

log = Logger(namespace="lmm.dataplane")


def swap(bindings: Iterable[TunnelBinding], old: Any, new: Any) -> Deferred[list[TunnelBinding]]:
    """
    Move C{bindings} from the data plane C{old} to C{new}, make before break:
    every binding is added to C{new} (and its Deferred, if any, has fired)
    before any is removed from C{old}. A binding C{new} cannot carry stays
    with C{old} (logged); the Deferred fires with the bindings moved. C{old}
    keeps running (its decapsulation too, for packets already in flight): stop
    it when done with it.
    """
    bindings = list(bindings)

    async def run() -> list[TunnelBinding]:
        moved: list[TunnelBinding] = []
        for binding in bindings:
            try:
                await maybeDeferred(new.addBinding, binding)
            except Exception:
                log.failure("swap: {new} cannot carry {binding}; it stays with {old}",
                            Failure(), new=getattr(new, "name", new), binding=binding,
                            old=getattr(old, "name", old))
                continue
            moved.append(binding)
        for binding in moved:
            old.removeBinding(binding)
        log.info("swap: moved {count} of {total} binding(s) from {old} to {new}",
                 count=len(moved), total=len(bindings), old=getattr(old, "name", old),
                 new=getattr(new, "name", new))
        return moved

    return Deferred.fromCoroutine(run())


def autoBackend(settings: Mapping[str, Any], reactor: IReactor) -> Any:
    """
    The C{seg6} backend where the kernel has seg6, else C{userspace}. The
    settings go to whichever is built, so give only keys both take.
    """
    from lmm.dataplane.seg6 import seg6Backend
    from lmm.dataplane.userspace import userspaceBackend

    try:
        return seg6Backend(settings, reactor)
    except KernelLacks as e:
        log.warn("auto backend: {reason}; using the userspace backend", reason=str(e))
    return userspaceBackend(settings, reactor)
