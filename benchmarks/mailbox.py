"""Mailbox figures against raw trio memory channels measured in the same run.

    python benchmarks/mailbox.py [--quick] [--json]

Each figure is a ratio to a baseline measured right next to it (interleaved rounds, median of
the per-round ratios), so a slower or busier machine moves both sides alike:

* tell_ratio: actor ``tell`` messages/s / raw channel send+receive messages/s (goal >= 0.6)
* ask_ratio: ``ask`` round trips/s / raw two-channel request+reply (goal >= 0.5)
* priority_latency_us_p99: priority message sent -> its handler running, with a handler in
  flight (awaiting a long settle) and 10 000 normal messages queued behind it;
  priority_backlog_ratio = that p99 / the p99 with the same handler in flight and an empty
  queue (goal <= 1.2: the backlog must not matter). priority_preemption_ratio = p99 with a
  handler in flight / p99 of an idle actor: what cancelling the handler costs (trio's
  cancellation delivery, measured alone as cancel_unwind_us).
* parameter_set_ratio: Parameter.set (validation, publish, no hardware) / a plain attribute
  update — for the record: it says what validation and publication cost per write.
* query_ask_ratio: ``ask`` round trips/s of a Query (served by the actor's query task) / the same
  request on the normal lane (goal >= 0.8: the query lane costs no more than the normal one).
  query_latency_busy_us_p99: a query's round trip while a normal handler is in flight (a 30 s
  move, here a handler awaiting forever); query_busy_ratio = that p99 / the p99 with nothing in
  flight (goal <= 1.5: a handler in flight does not delay a query; without the query lane the
  query waited for the handler's end).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, p99, run_benchmark

from runtime import (
    Actor,
    ActorSystem,
    Message,
    Parameter,
    PriorityMessage,
    Query,
    Request,
    Source,
    run_actor,
)

BACKLOG = 10_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Tick(Message):
    n: int


@dataclass(frozen=True, slots=True)
class Double(Request[int]):
    n: int


@dataclass(frozen=True, slots=True)
class DoubleQuery(Request[int], Query):
    """Double as a query: the same work, served by the query task."""

    n: int


@dataclass(frozen=True, slots=True)
class Settle(Message):
    """Keeps the handler in flight until a priority message cancels it."""


@dataclass(frozen=True, slots=True)
class Probe(Request[None], PriorityMessage):
    sent: float


class Counter(Actor):
    """Counts ticks, doubles numbers, timestamps probes; the work is a checkpoint at most."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = trio.Event()
        self.latencies: list[float] = []
        self.busy = False
        self.settling = False

    async def handle(self, message: Message) -> object:
        match message:
            case Tick():
                self.count += 1
                if self.busy:
                    await trio.lowlevel.checkpoint()  # a handler that awaits something
                if self.count == self.target:
                    self.reached.set()
                return None
            case Double(n=n) | DoubleQuery(n=n):
                return 2 * n
            case Settle():
                self.settling = True
                try:
                    await trio.sleep_forever()
                finally:
                    self.settling = False
            case Probe(sent=sent):
                self.latencies.append(time.perf_counter() - sent)
                return None
        return await super().handle(message)


async def _with_actor(body: Callable[[ActorSystem, Counter], Awaitable[T]]) -> T:
    system = ActorSystem()
    cell = system.cell("counter", capacity=BACKLOG * 2)
    actor = Counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, actor, system)
        result = await body(system, actor)
        nursery.cancel_scope.cancel()  # not a graceful stop: a Settle may be in flight
    return result


# -- tell ----------------------------------------------------------------------------------


async def raw_channel_rate(n: int) -> float:
    send, receive = trio.open_memory_channel[Tick](1024)
    message = Tick(0)

    async def consume() -> None:
        async for _ in receive:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        start = time.perf_counter()
        async with send:
            for _ in range(n):
                await send.send(message)
        elapsed = time.perf_counter() - start
    return n / elapsed


async def actor_tell_rate(n: int) -> float:
    async def body(system: ActorSystem, actor: Counter) -> float:
        ref = system.ref("counter")
        actor.target = n
        message = Tick(0)
        start = time.perf_counter()
        for _ in range(n):
            await ref.tell(message)
        await actor.reached.wait()
        return n / (time.perf_counter() - start)

    return await _with_actor(body)


# -- ask -----------------------------------------------------------------------------------


async def raw_request_reply_rate(n: int) -> float:
    req_send, req_receive = trio.open_memory_channel[int](0)
    rep_send, rep_receive = trio.open_memory_channel[int](0)

    async def serve() -> None:
        async for value in req_receive:
            await rep_send.send(2 * value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        start = time.perf_counter()
        for i in range(n):
            await req_send.send(i)
            await rep_receive.receive()
        elapsed = time.perf_counter() - start
        await req_send.aclose()
    return n / elapsed


async def actor_ask_rate(n: int) -> float:
    async def body(system: ActorSystem, actor: Counter) -> float:
        ref = system.ref("counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(Double(i))
        return n / (time.perf_counter() - start)

    return await _with_actor(body)


async def actor_query_rate(n: int) -> float:
    async def body(system: ActorSystem, actor: Counter) -> float:
        ref = system.ref("counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(DoubleQuery(i))
        return n / (time.perf_counter() - start)

    return await _with_actor(body)


async def query_latencies(samples: int, *, busy: bool) -> list[float]:
    """Round trip of a query, with a Settle handler in flight (``busy``) or nothing."""

    async def body(system: ActorSystem, actor: Counter) -> list[float]:
        ref = system.ref("counter")
        if busy:
            ref.try_tell(Settle())
            await trio.testing.wait_all_tasks_blocked()
            assert actor.settling
        latencies = []
        for i in range(samples):
            sent = time.perf_counter()
            await ref.ask(DoubleQuery(i))
            latencies.append(time.perf_counter() - sent)
        assert actor.settling == busy  # the handler stayed in flight throughout
        return latencies

    return await _with_actor(body)


# -- priority latency ----------------------------------------------------------------------


async def priority_latencies(samples: int, *, mode: str) -> list[float]:
    """Send-to-handler latency of a priority message.

    mode "idle": nothing in flight, empty queue; "busy": a Settle handler in flight;
    "backlog": a Settle handler in flight and BACKLOG more Settles queued behind it (each
    probe preempts one; the next one from the queue is then in flight for the next probe).
    """

    async def body(system: ActorSystem, actor: Counter) -> list[float]:
        ref = system.ref("counter")
        queued = BACKLOG if mode == "backlog" else 0
        for _ in range(samples):
            await trio.testing.wait_all_tasks_blocked()
            if mode != "idle" and not actor.settling:
                ref.try_tell(Settle())
                await trio.testing.wait_all_tasks_blocked()
            while ref.statistics().normal_depth < queued:
                ref.try_tell(Settle())
            assert actor.settling == (mode != "idle")
            assert ref.statistics().normal_depth == queued
            await ref.ask(Probe(time.perf_counter()))
        return actor.latencies

    return await _with_actor(body)


async def cancel_unwind_seconds(n: int) -> float:
    """What trio charges to cancel a task blocked in a sleep: the floor under preemption."""
    start = time.perf_counter()
    for _ in range(n):
        with trio.CancelScope() as scope:
            scope.cancel()
            await trio.sleep_forever()
    return (time.perf_counter() - start) / n


# -- parameters ----------------------------------------------------------------------------


async def parameter_set_rate(n: int) -> float:
    param = Parameter("velocity", float, 1.0, units="deg/s", limits=(0.0, 1e9))
    start = time.perf_counter()
    for i in range(n):
        await param.set(float(i), source=Source.SCRIPT)
    return n / (time.perf_counter() - start)


async def attribute_update_rate(n: int) -> float:
    class Plain:
        velocity = 0.0

    target = Plain()
    start = time.perf_counter()
    for i in range(n):
        target.velocity = float(i)
    return n / (time.perf_counter() - start)


# -- driver --------------------------------------------------------------------------------


async def measure(quick: bool) -> dict[str, object]:
    rounds = 3 if quick else 7
    n = 20_000 if quick else 100_000
    samples = 500 if quick else 3_000
    pairs = {
        "tell": (actor_tell_rate, raw_channel_rate),
        "ask": (actor_ask_rate, raw_request_reply_rate),
        "parameter_set": (parameter_set_rate, attribute_update_rate),
        "query_ask": (actor_query_rate, actor_ask_rate),
    }
    ratios: dict[str, list[float]] = {k: [] for k in pairs}
    rates: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, (subject, baseline) in pairs.items():
            base = await baseline(n)
            got = await subject(n)
            ratios[name].append(got / base)
            rates.setdefault(f"{name}_per_s", []).append(got)
            rates.setdefault(f"{name}_baseline_per_s", []).append(base)
    idle = await priority_latencies(samples, mode="idle")
    busy = await priority_latencies(samples, mode="busy")
    backlog = await priority_latencies(samples, mode="backlog")
    query_idle = await query_latencies(samples, busy=False)
    query_busy = await query_latencies(samples, busy=True)
    result: dict[str, object] = {
        "tell_ratio": round(statistics.median(ratios["tell"]), 3),
        "ask_ratio": round(statistics.median(ratios["ask"]), 3),
        "priority_latency_us_p99": round(p99(backlog) * 1e6, 1),
        "priority_latency_busy_us_p99": round(p99(busy) * 1e6, 1),
        "priority_latency_idle_us_p99": round(p99(idle) * 1e6, 1),
        "priority_backlog_ratio": round(p99(backlog) / p99(busy), 3),
        "priority_preemption_ratio": round(p99(busy) / p99(idle), 3),
        "priority_latency_us_p50": round(statistics.median(backlog) * 1e6, 1),
        "cancel_unwind_us": round(await cancel_unwind_seconds(n // 10) * 1e6, 1),
        "parameter_set_ratio": round(statistics.median(ratios["parameter_set"]), 3),
        "query_ask_ratio": round(statistics.median(ratios["query_ask"]), 3),
        "query_latency_busy_us_p99": round(p99(query_busy) * 1e6, 1),
        "query_latency_idle_us_p99": round(p99(query_idle) * 1e6, 1),
        "query_busy_ratio": round(p99(query_busy) / p99(query_idle), 3),
    }
    for key, values in rates.items():
        result[key] = round(statistics.median(values))
    result["goals_met"] = {
        "tell_ratio>=0.6": result["tell_ratio"] >= 0.6,  # type: ignore[operator]
        "ask_ratio>=0.5": result["ask_ratio"] >= 0.5,  # type: ignore[operator]
        "priority_backlog_ratio<=1.2": result["priority_backlog_ratio"] <= 1.2,  # type: ignore[operator]
        "query_ask_ratio>=0.8": result["query_ask_ratio"] >= 0.8,  # type: ignore[operator]
        "query_busy_ratio<=1.5": result["query_busy_ratio"] <= 1.5,  # type: ignore[operator]
    }
    result["settings"] = {"rounds": rounds, "messages": n, "latency_samples": samples}
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], lambda quick: trio.run(measure, quick))
