"""The daemon's garbage-collector policy: keep full collections out of the e-stop's way.

CPython's cyclic collector stops the world — the event loop, the e-stop path included — for
as long as a collection takes, and a full (generation-2) collection walks every tracked object.
A running daemon holds ~10⁶ of them (modules, protobuf descriptors, numpy, h5py, the actor
tree), almost all made at start-up and alive until exit: walking them again and again buys
nothing. Measured with ``benchmarks/edge.py --hostile --quick`` on the 2-vCPU VM
(docs/performance.md): full collections of 47-65 ms were the largest single cause of the
e-stop's tail under hostile load; freezing the start-up heap and collecting the young
generation less often cut the e-stop's arrival-to-broadcast p99 from 32-34 ms to 4-10 ms.

So, once the bench is up: collect once, move every surviving object into the permanent
generation (``gc.freeze``: never scanned again), and raise the young generation's threshold so
the many short-lived objects of a busy edge are collected in fewer, equally short passes.
Memory is still freed by reference counting as always; only cycles wait a little longer.
"""

from __future__ import annotations

import gc

#: Allocations (minus deallocations) before a young-generation pass; CPython's default is 700.
YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> int:
    """Collect, freeze what survives, raise the young threshold; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()
