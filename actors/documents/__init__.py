"""Bluesky documents of every run, live and rebuilt from files, and the Tiled publisher.

Why a package of its own beside the pipeline (not inside acquisition): every run produces
documents — a plain record, a plan, a script's run, the run a Bluesky detector starts — and all
of them are written by the pipeline's RunWriter, whose feed (actors/pipeline/run_feed.py) is
this package's input. The daemon needs only event-model for them (a daemon dependency, small:
jsonschema and numpy); Tiled and bluesky-tiled-plugins are imported only by the publisher,
when ``[publish] tiled`` is configured (the ``publish`` extra). See docs/facility.md.
"""

from .actor import (
    DOCUMENTS_NAME,
    PUBLISHER_NAME,
    DocumentCursor,
    DocumentsActor,
    DocumentsStatus,
    FindRun,
    FollowDocuments,
    FoundRun,
    GetDocumentsStatus,
    PublishRun,
    encode,
    origin_of,
)
from .compose import PAGE_ROWS, Document, RunComposer, data_key, exit_status
from .log import DocumentLog, DocumentsGap, LoggedDocument
from .replay import RunStillRecording, replay

__all__ = [
    "DOCUMENTS_NAME",
    "PAGE_ROWS",
    "PUBLISHER_NAME",
    "Document",
    "DocumentCursor",
    "DocumentLog",
    "DocumentsActor",
    "DocumentsGap",
    "DocumentsStatus",
    "FindRun",
    "FollowDocuments",
    "FoundRun",
    "GetDocumentsStatus",
    "LoggedDocument",
    "PublishRun",
    "RunComposer",
    "RunStillRecording",
    "data_key",
    "encode",
    "exit_status",
    "origin_of",
    "replay",
]
