"""``record`` as a plan: Storage.StartRun's request turned into the count that records it.

Why a plan: a recording is acquisition like any scan — checked by the one validator (name,
camera, disk, compression, the e-stop latch), run by the one executor in the bench's one run
slot, listed with the plans, its run composed from the same pieces. What it records, by
default (the user asked for a run of the bench, not for a list of switches):

=====================  ==========================================================
request                plan
=====================  ==========================================================
``frames=N``           one point of N frames (one camera sequence); the run ends
                       when they are in
``duration=S``         the camera *live* for S seconds (every frame in the run)
both                   N frames, cut when S seconds have passed
neither                until StopRun; the camera's frames whoever takes them
                       (a live view, a user's sequence, a Bluesky trigger)
``record_frames=False``  no camera
always                 ``monitor``: every Readable streams into the run for its
                       whole length (the power meter's ``streaming`` is switched on
                       and back off after); no bench suspenders (a recording
                       records what happens)
=====================  ==========================================================

StartRun's contract is kept: the same request, a reply once the file exists (the run's
status), the same refusals (INVALID_ARGUMENT for a bad name, compression or count;
FAILED_PRECONDITION while a run records, the camera is busy or the e-stop is latched;
RESOURCE_EXHAUSTED when the disk is low), and the run's metadata is the user's own.
"""

from __future__ import annotations

import json
import math

from runtime import ValidationError

from ..pipeline.recorder import StartRun
from .plans import MAX_DURATION, MAX_FRAMES, Count, Plan

RECORD_ORIGIN = "record"  # a recording's origin in ListScans / the manifest


def record_plan(request: StartRun, camera: str | None) -> Plan:
    """The plan that records ``request`` on a bench whose camera is ``camera`` (None: none).

    Error handling: ValidationError for what the request itself gets wrong (the validator
    checks the rest against the bench: the name, the compression, the disk)."""
    if request.scan_columns:
        raise ValidationError("a recording has no scan columns; a plan's come from its path")
    frames = request.frames
    duration = request.duration
    recorded = (request.camera or camera) if request.record_frames else None
    if frames is not None:
        if camera is None or not request.record_frames:
            raise ValidationError(
                "frames= needs a camera, and this bench has none"
                if camera is None
                else "frames= needs record_frames=True"
            )
        if not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
            raise ValidationError(f"frames must be 1..{MAX_FRAMES}, got {frames!r}")
    if duration is not None and not (
        isinstance(duration, int | float) and math.isfinite(duration) and duration > 0
    ):
        raise ValidationError(f"duration must be > 0 s, got {duration!r}")
    if duration is not None and duration > MAX_DURATION:
        raise ValidationError(
            f"duration must be at most {MAX_DURATION / 86400:g} days, got {duration:g} s"
        )
    try:
        metadata_json = json.dumps(dict(request.metadata))
    except (TypeError, ValueError) as error:
        raise ValidationError(f"run metadata must be JSON: {error}") from None
    return Plan(
        Count(1, duration=float(duration or 0.0)),
        frames=frames or 0,
        camera=recorded or "",
        live=bool(duration) and not frames and recorded is not None,
        name=request.name,
        metadata_json=metadata_json,
        monitor=True,
        bench_suspenders=False,
        compression=request.compression,
    )


__all__ = ["RECORD_ORIGIN", "record_plan"]
