"""Once the bench is up, the start-up heap leaves the collector's walks (runtime/gc_policy.py)."""

from __future__ import annotations

import gc

from runtime.gc_policy import YOUNG_THRESHOLD, freeze_startup_heap


def test_the_startup_heap_is_frozen_and_young_passes_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 10_000  # the interpreter, pytest, numpy...
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        # Frozen objects are never scanned: a full collection walks only what came later.
        assert sum(gc.get_count()) < YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
