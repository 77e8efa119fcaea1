"""Another process reading benchd runs from Tiled, as a user on any machine would: search by
metadata, read a stream's table, slice one frame. Prints one JSON object.

Usage: tiled_reader.py URL API_KEY '[{"plan_name": "scan", "sample": "quartz", "frame": 2}, …]'
(one answer per query, in a JSON list; ``"documents": true`` adds ``run.documents()``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tiled.client import from_uri
from tiled.queries import Key


def main() -> None:
    url, key, raw = sys.argv[1:4]
    catalog = from_uri(url, api_key=key)
    print(json.dumps([answer(catalog, query) for query in json.loads(raw)], default=plain))


def plain(value: Any) -> Any:
    """numpy scalars and arrays in documents, as JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def answer(catalog: Any, query: dict[str, Any]) -> dict[str, Any]:
    results = catalog
    for field in ("plan_name", "sample"):
        if field in query:
            results = results.search(Key(f"start.{field}") == query[field])
    found: dict[str, Any] = {"uids": sorted(results.keys())}
    if len(results) == 1:
        run = results.values().first()
        found["streams"] = sorted(run.keys())
        found["exit_status"] = run.metadata["stop"]["exit_status"]
        stream = query.get("stream", "primary")
        if stream in run:
            table = run[stream].read()
            found["table"] = {
                name: [v.item() if hasattr(v, "item") else v for v in table[name].values]
                for name in table.data_vars
                if table[name].ndim == 1
            }
        if query.get("documents"):  # the run's document stream, replayed by the server
            found["documents"] = [[name, document] for name, document in run.documents()]
        if "frame" in query and "camera" in run:
            frames = run["camera"]["camera"]
            found["frames_shape"] = list(frames.shape)
            found["frame"] = frames[query["frame"]].tolist()
    return found


if __name__ == "__main__":
    main()
