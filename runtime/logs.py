"""The daemon's log: one line per event, as text for people or JSON for log shippers.

A bench runs for months; its log is read by people at a terminal and by machines (journald,
Loki, Elasticsearch). Text lines keep the classic ``time level logger: message`` shape; JSON
lines are one object per line with the same fields plus any structured ``extra`` a record
carries — the audit trail (who, role, what, when, result) is such a record, so a log shipper
can index it without parsing prose. Tracebacks stay inside the one line (as a field in JSON,
indented continuation lines in text, as the stdlib does).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is data.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)

    @staticmethod
    def _iso(created: float) -> str:
        millis = int(created % 1 * 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def configure_logging(level: str = "INFO", fmt: LogFormat = "text") -> None:
    """Send the daemon's log to stderr in ``fmt``; replaces any handler set before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The audit trail (who moved, set, ran what) is kept whatever the level: it is a record,
    # not chatter (actors/edge/audit.py).
    logging.getLogger("benchd.audit").setLevel(min(logging.INFO, root.level))
