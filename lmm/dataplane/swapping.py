"""
Swapping a running daemon's tunnel backend, make before break
(docs/dataplane.md, "Swapping while the daemons run").

The daemons' data plane is a L{SwappableTunnel}: an L{ITunnelDataPlane} that
delegates to the backend carrying the bindings (C{current}) and can replace
it while the daemon runs. While a swap runs, it queues the tunnel changes the
daemon makes (a registration, a handover, an expiry) in a L{_Held}: they are
applied, in order, to whichever backend carries the bindings once the swap is
over -- the new one, or the old one after a roll back. A queued addition's
Deferred fires only then, so the daemon still sends its answer (the PBA, the
RA) once the tunnel is up. Queueing, rather than applying each change to both
backends, means no binding can be added to the new backend twice or after its
removal, whatever the order in which the two backends answer.

A swap lasts until the daemon stops: its configuration file is not changed,
and a restart builds the file's C{tunnel.backend} again. L{TunnelConfig}
(a L{lmm.live.BackendConfig}) says what that file holds;
L{SwappableTunnel.swapTunnel} (the C{tunnel} command) uses it for the
options' defaults and to say whether a swap would survive a restart.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, cast

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from lmm.dataplane import swap
from lmm.interfaces import IReactor, ITunnelDataPlane
from lmm.live import BackendConfig, SwapError, buildSwapped, direct
from lmm.logs import Logger
from lmm.tunnel import TunnelBinding

log = Logger(namespace="lmm.dataplane.swapping")

#: Seconds the old backend keeps running after a swap, for packets in flight.
GRACE = 1.0


#: The backend that picks another when built: a swap names the one it wants.
AUTO = "auto"


def TunnelConfig(backend: str, options: Mapping[str, Any] | None = None,
                 built: str | None = None, path: str | None = None) -> BackendConfig:
    """What the daemon's configuration file says of its tunnel (a
    L{BackendConfig} of kind C{tunnel}): what a restart brings back."""
    return BackendConfig("tunnel", backend, dict(options or {}), built, path)


def tunnelConfig(values: Mapping[str, Any], built: Any, path: str | None) -> BackendConfig:
    """The tunnel's L{BackendConfig} of a daemon's checked settings C{values}
    (C{tunnel.backend}, C{tunnel.options}) and the backend C{built} from them."""
    return BackendConfig.fromValues("tunnel", values, getattr(built, "name", None), path)


class _Held:
    """What a L{SwappableTunnel} delegates to while a swap runs: tunnel
    changes wait for its end."""

    def __init__(self, old: Any) -> None:
        self.old = old
        self.name = getattr(old, "name", "?")
        self.queue: list[tuple[str, TunnelBinding, Deferred[None] | None]] = []
        self.new: Any = None

    def addBinding(self, binding: TunnelBinding) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self.queue.append(("add", binding, done))
        return done

    def removeBinding(self, binding: TunnelBinding) -> None:
        self.queue.append(("remove", binding, None))

    def prepare(self, localEndpoint: str, peers: Sequence[str] = (),
                accessInterfaces: Sequence[str] = ()) -> None:
        # The bindings the swap moves open the new backend's tunnel end.
        self.old.prepare(localEndpoint, peers, accessInterfaces)

    def bindings(self) -> list[TunnelBinding]:
        return list(self.old.bindings())

    def stop(self) -> Deferred[Any]:
        # The daemon stops in the middle of a swap: both backends go.
        d = maybeDeferred(self.old.stop)
        if self.new is not None:
            new = self.new
            d.addBoth(lambda _: maybeDeferred(new.stop))
        return d

    async def drain(self, plane: Any) -> None:
        """Apply what was queued to C{plane}, in order."""
        while self.queue:
            kind, binding, done = self.queue.pop(0)
            if kind == "remove":
                result = maybeDeferred(plane.removeBinding, binding)
                result.addErrback(_removeFailed, binding)
                continue
            assert done is not None
            try:
                await maybeDeferred(plane.addBinding, binding)
            except Exception:
                done.errback(Failure())
            else:
                done.callback(None)


def _removeFailed(failure: Failure, binding: TunnelBinding) -> None:
    log.failure("removing {binding} after a swap", failure, binding=binding)


@implementer(ITunnelDataPlane)
class SwappableTunnel:
    """
    The daemon's tunnel data plane: delegates to C{current}, the backend that
    carries the bindings, and replaces it while the daemon runs (L{swap}).

    @param within: calls a function of no arguments where the daemon makes
        its sockets and routes (its network namespace); a swapped-in backend
        is built there.
    @param config: what the configuration file says (None: a daemon built
        without one).
    """

    def __init__(self, backend: Any, reactor: IReactorTime,
                 config: BackendConfig | None = None,
                 within: Callable[[Callable[[], Any]], Any] = direct) -> None:
        self.current = backend
        self.reactor = reactor
        self.config = config
        self.within = within
        self._held: _Held | None = None
        self._retired: list[tuple[Any, Any]] = []
        self._prepared: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.current!r}>"

    @property
    def name(self) -> str:
        return getattr(self.current, "name", type(self.current).__name__)

    @property
    def _delegate(self) -> Any:
        return self.current if self._held is None else self._held

    # ITunnelDataPlane

    def prepare(self, localEndpoint: str, peers: Sequence[str] = (),
                accessInterfaces: Sequence[str] = ()) -> None:
        # Remembered for a backend swapped in later (L{_swap}).
        self._prepared = (localEndpoint, tuple(peers), tuple(accessInterfaces))
        self._delegate.prepare(localEndpoint, peers, accessInterfaces)

    def addBinding(self, binding: TunnelBinding) -> Deferred[None] | None:
        result: Deferred[None] | None = self._delegate.addBinding(binding)
        return result

    def removeBinding(self, binding: TunnelBinding) -> Any:
        return self._delegate.removeBinding(binding)

    def bindings(self) -> list[TunnelBinding]:
        return list(self._delegate.bindings())

    def statistics(self) -> dict[str, int]:
        """The current backend's own counts, where it keeps them (userspace)."""
        statistics = getattr(self.current, "statistics", None)
        return {} if statistics is None else dict(statistics())

    # a departing visitor's downlink (lmm.actions.HoldDownlink), where the backend can

    def holdDownlink(self, binding: TunnelBinding) -> bool:
        hold = getattr(self._delegate, "holdDownlink", None)
        return hold is not None and hold(binding) is not False

    def releaseDownlink(self, binding: TunnelBinding, handBack: bool) -> None:
        release = getattr(self._delegate, "releaseDownlink", None)
        if release is not None:
            release(binding, handBack)

    def stop(self) -> Deferred[Any]:
        """Stop the backend (both, in the middle of a swap) and the retired
        ones still in their grace period."""
        return DeferredList([self.stopRetired(), maybeDeferred(self._delegate.stop)])

    # swapping

    def swapTunnel(self, name: str, given: Mapping[str, Any],
                   grace: float = GRACE) -> Deferred[dict[str, Any]]:
        """
        The C{tunnel BACKEND [KEY=VALUE ...]} command: L{swap} to C{name}
        with the options C{given} over the defaults a restart would use --
        the file's C{[tunnel.options]} when C{name} is the backend the file
        names (or the one C{auto} picked), none for another backend (the
        file's options were written for the file's backend). So swapping back
        to the file's backend gives what a restart gives.

        Fires with C{backend}, C{moved}, C{options} (those used),
        C{persistent} (whether a restart brings back this backend with these
        options; a swap itself never changes the file) and, when not,
        C{hint}: what to set in the file to keep it.
        """
        config = self.config or TunnelConfig("")
        options = config.optionsFor(name, given)

        def answer(result: dict[str, Any]) -> dict[str, Any]:
            return {**result, **config.answer(name, options)}

        return self.swap(name, options, grace).addCallback(answer)

    def swap(self, name: str, options: Mapping[str, Any],
             grace: float = GRACE) -> Deferred[dict[str, Any]]:
        """
        Build backend C{name} with C{options}, move every binding to it, make
        before break, and make it C{current}; the old one is stopped C{grace}
        seconds later. A backend that cannot be built, or that cannot carry
        every binding, leaves the old one in place: the Deferred fails with
        L{SwapError}. Else it fires with C{{"backend": name, "moved": n}}.
        """
        return Deferred.fromCoroutine(self._swap(name, dict(options), grace))

    def _build(self, name: str, options: dict[str, Any]) -> Any:
        oldName = self.name
        if self._held is not None:
            raise SwapError("a swap is already running")
        if name == oldName:
            # Two instances of one backend would share its routes' tags.
            raise SwapError(f"the tunnel backend is {name} already (to change its options, "
                            "swap to another backend and back)")
        if name == AUTO:
            # It could build the backend in use: two instances again.
            raise SwapError(f"{AUTO} picks a backend when the daemon starts; name the one to "
                            f"swap to (seg6 or userspace; {oldName} now)")
        # A daemon's reactor is the whole one (IReactor); a test's Clock builds nothing.
        return buildSwapped(ITunnelDataPlane, "tunnel", name, options,
                            cast(IReactor, self.reactor), self.within, oldName)

    async def _swap(self, name: str, options: dict[str, Any], grace: float) -> dict[str, Any]:
        old = self.current
        oldName = self.name
        new = self._build(name, options)
        if self._prepared is not None:
            new.prepare(*self._prepared)
        held = self._held = _Held(old)
        held.new = new
        bindings = list(old.bindings())
        failure: Exception | None
        try:
            moved = await swap(bindings, old, new)
        except Exception as e:
            moved, failure = [], e
        else:
            failure = None
        if failure is None and len(moved) == len(bindings):
            self.current = new
            self._held = None
            await held.drain(new)
            self._retire(old, grace)
            log.info("tunnel backend swapped from {old} to {new}: {count} binding(s) moved",
                     old=oldName, new=name, count=len(moved))
            return {"backend": name, "moved": len(moved)}
        await self._rollBack(held, moved, new, name)
        why = (f"{failure}" if failure is not None
               else f"it could carry only {len(moved)} of {len(bindings)} binding(s)")
        log.warn("tunnel backend swap to {name} rolled back ({why}); {old} stays",
                 name=name, why=why, old=oldName)
        raise SwapError(f"swap to {name} rolled back: {why}; {oldName} stays")

    async def _rollBack(self, held: _Held, moved: list[TunnelBinding], new: Any,
                        name: str) -> None:
        """Make before break again: the moved bindings back on the old backend
        before they leave the new one; then what waited goes to the old one."""
        old = held.old
        for binding in moved:
            try:
                await maybeDeferred(old.addBinding, binding)
            except Exception:
                log.failure("swap roll back: {binding} could not go back to {old}",
                            Failure(), binding=binding, old=getattr(old, "name", old))
        for binding in moved:
            new.removeBinding(binding)
        self._held = None
        await held.drain(old)
        try:
            await maybeDeferred(new.stop)
        except Exception:
            log.failure("stopping the {name} backend after a failed swap", Failure(), name=name)

    def _retire(self, old: Any, grace: float) -> None:
        retired = self._retired

        def stop() -> None:
            retired[:] = [(o, c) for o, c in retired if o is not old]
            d = maybeDeferred(old.stop)
            d.addErrback(lambda f: log.failure("stopping the retired {name} backend", f,
                                               name=getattr(old, "name", old)))

        retired.append((old, self.reactor.callLater(grace, stop)))

    def stopRetired(self) -> Deferred[Any]:
        """Stop at once the old backends still in their grace period."""
        waits = []
        retired, self._retired = self._retired, []
        for old, call in retired:
            if call.active():
                call.cancel()
            waits.append(maybeDeferred(old.stop))
        return DeferredList(waits)
