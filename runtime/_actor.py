"""The Actor base class: state, lifecycle hooks and one handler.

Subclass it, keep your state in attributes (nobody else can reach them: other code holds an
``ActorRef``), and implement :meth:`Actor.handle` with a ``match`` over your message types.
The loop that drives an actor lives in ``_actor_loop.py``; this module is what actor authors
read.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ._errors import UnhandledMessage
from ._messages import Message
from ._parameter_tree import ParameterTree

if TYPE_CHECKING:
    from ._ref import ActorRef
    from ._system import ActorSystem


class Actor:
    """One task that owns its state and handles one message at a time.

    Lifecycle: ``on_start`` (connect, read identity) runs before the actor is reported ready;
    parameters a user or script set before a restart are then re-applied and verified;
    ``on_stop`` (leave the hardware safe) always runs at exit — normal, crash or forced —
    shielded from cancellation and bounded by ``stop_timeout``. ``on_emergency_stop`` and
    ``on_abort`` run from the priority lane, after the handler in flight has been cancelled,
    also shielded and bounded.

    Error handling: raise a :class:`~runtime.RequestError` subclass to refuse a request and
    carry on; anything else crashes the actor (after the asker is told) and the supervisor
    restarts a fresh instance. Helper tasks started in :attr:`nursery` crash the actor too.
    """

    #: Upper bound (seconds) on shielded work: on_stop, on_emergency_stop, on_abort.
    stop_timeout: ClassVar[float] = 5.0

    name: str
    ref: ActorRef
    system: ActorSystem
    _nursery: trio.Nursery | None = None

    @functools.cached_property
    def parameters(self) -> ParameterTree:
        """This actor's parameters; add to it in ``__init__`` or ``on_start``."""
        return ParameterTree()

    @property
    def nursery(self) -> trio.Nursery:
        """For helper tasks (pollers, readers) that live and die with this instance."""
        if self._nursery is None:
            raise RuntimeError(f"{type(self).__name__} is not running; it has no nursery")
        return self._nursery

    def _bind(self, ref: ActorRef, system: ActorSystem, nursery: trio.Nursery | None) -> None:
        self.name = ref.name
        self.ref = ref
        self.system = system
        self._nursery = nursery

    async def handle(self, message: Message) -> Any:
        """Handle one message; the return value is the reply to an ask."""
        raise UnhandledMessage(
            f"{type(self).__name__} does not handle {type(message).__name__} messages"
        )

    async def on_start(self) -> None:
        """Connect and prepare; the actor is reported ready only when this returns."""

    async def on_stop(self) -> None:
        """Leave the hardware safe. Must tolerate a partial start (on_start failed midway)."""

    async def on_emergency_stop(self, reason: str) -> None:
        """Put the hardware in its safe state now (stop motion, close the shutter)."""

    async def on_abort(self, reason: str) -> None:
        """Clean up after the work in flight was cancelled (e.g. stop an acquisition)."""

    async def on_reset(self) -> None:
        """Called when the emergency-stop latch is cleared."""

    def release(self) -> None:
        """End what others hold of this instance (parameter subscriptions, taps) once it has
        stopped, so nobody waits on a dead instance; extend it, calling ``super().release()``."""
        self.parameters.close()
