"""A one-shot reply slot: the asker parks on it, the actor fills it exactly once.

Built on ``trio.lowlevel.wait_task_rescheduled`` rather than an Event or a memory channel
because ``ask`` is on every hot path (parameter reads, position polls) and this is the
cheapest correct primitive trio offers: no allocation beyond the slot, one reschedule.

Error handling: if the asker is cancelled (its own timeout, a client going away) the slot is
marked *abandoned*. The actor checks that flag before running a queued request, so a move
whose asker gave up is never executed later by surprise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import outcome
import trio


class ReplySlot:
    __slots__ = ("_result", "_waiter", "abandoned")

    def __init__(self) -> None:
        self._result: outcome.Outcome[Any] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self.abandoned = False

    @property
    def filled(self) -> bool:
        return self._result is not None

    def set_value(self, value: object) -> None:
        self._fill(outcome.Value(value))

    def set_error(self, error: BaseException) -> None:
        self._fill(outcome.Error(error))

    def _fill(self, result: outcome.Outcome[Any]) -> None:
        if self._result is not None or self.abandoned:
            return
        self._result = result
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(waiter, result)

    async def wait(self) -> Any:
        """The reply value; raises the error the actor sent. Cancellation abandons the slot."""
        if self._result is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()  # never lose a reply that came
            return self._result.unwrap()
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            self.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


class CallbackSlot(ReplySlot):
    """A reply slot that calls a function with the outcome instead of waking a trio task.

    For askers that are not trio tasks: the gRPC edge's asyncio servicers resolve an asyncio
    Future from the callback, on the same thread, with no trio task per request. The callback
    runs in the actor's task, so it must only hand the outcome on (it must not block or raise).
    """

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[outcome.Outcome[Any]], None]) -> None:
        super().__init__()
        self._callback = callback

    def _fill(self, result: outcome.Outcome[Any]) -> None:
        if self._result is not None or self.abandoned:
            return
        self._result = result
        self._callback(result)

    def abandon(self) -> None:
        """The asker gave up: a request still queued is never run, a late reply is dropped."""
        self.abandoned = True
