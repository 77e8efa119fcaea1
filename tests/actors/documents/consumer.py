"""What a third-party Bluesky consumer checks of a run's documents, beyond each document's schema:
the order event-model's routers rely on, unique uids, times that never go back, event data
that matches its descriptor (keys, dtype, shape), ``num_events`` per stream, and stream
resources / datums whose rows are contiguous and exist, with that shape and dtype, in the HDF5
file they point at (as Tiled's HDF5 consolidator opens it)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any
from urllib.parse import urlparse

import h5py
import hdf5plugin  # noqa: F401 (the frames' bitshuffle filter)
import numpy as np
from event_model import DocumentNames, DocumentRouter, RunRouter, schema_validators

Documents = list[tuple[str, dict[str, Any]]]

_KINDS = {"number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,)}
_NUMPY_KINDS = {"number": "fi", "integer": "iu", "string": "US", "boolean": "b", "array": "iufb"}


def check_value(key: str, value: Any, data_key: dict[str, Any]) -> None:
    dtype = data_key["dtype"]
    if dtype == "array":
        shape = list(np.asarray(value).shape)
        assert shape == data_key["shape"], (key, shape, data_key["shape"])
        return
    assert data_key["shape"] == [], (key, data_key["shape"])
    if value is None:
        return
    assert isinstance(value, _KINDS[dtype]), (key, value, dtype)
    if dtype in ("number", "integer"):
        assert not isinstance(value, bool), (key, value, dtype)
    numpy_kind = np.dtype(data_key["dtype_numpy"]).kind
    assert numpy_kind in _NUMPY_KINDS[dtype], (key, data_key["dtype_numpy"], dtype)


def audit(documents: Documents) -> None:
    """Every check above; raises AssertionError naming what is wrong."""
    assert documents, "no documents"
    names = [name for name, _ in documents]
    assert names[0] == "start" and names.count("start") == 1, names[:3]
    assert names[-1] == "stop" and names.count("stop") == 1, names[-3:]
    uids: set[str] = set()

    def unique(uid: str) -> None:
        assert uid not in uids, f"uid {uid} used twice"
        uids.add(uid)

    start = documents[0][1]
    run_uid = start["uid"]
    descriptors: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    events: dict[str, list[tuple[int, float]]] = defaultdict(list)  # descriptor -> (seq, time)
    datums: dict[str, list[dict[str, Any]]] = defaultdict(list)
    last_time = start["time"]
    for name, document in documents:
        schema_validators[DocumentNames[name]].validate(document)
        if name == "start":
            unique(document["uid"])
        elif name == "descriptor":
            unique(document["uid"])
            assert document["run_start"] == run_uid
            assert document["time"] >= start["time"], ("descriptor before start", document["name"])
            assert document["name"] not in {d["name"] for d in descriptors.values()}
            descriptors[document["uid"]] = document
            for field_hints in document.get("hints", {}).values():
                for field in field_hints.get("fields", []):
                    assert field in document["data_keys"], (document["name"], field)
            for device, keys in document.get("object_keys", {}).items():
                for key in keys:
                    assert key in document["data_keys"], (device, key)
            for device, config in document.get("configuration", {}).items():
                assert set(config["data"]) == set(config["data_keys"]), device
                assert set(config["data"]) == set(config["timestamps"]), device
                for key, value in config["data"].items():
                    check_value(key, value, config["data_keys"][key])
        elif name in ("event", "event_page"):
            descriptor = descriptors[document["descriptor"]]
            keys = descriptor["data_keys"]
            internal = {k for k, v in keys.items() if not v.get("external")}
            assert set(document["data"]) == internal, (descriptor["name"], set(document["data"]))
            assert set(document["timestamps"]) == internal, descriptor["name"]
            if name == "event":
                rows = [(document["seq_num"], document["time"], document["uid"], document["data"])]
            else:
                rows = [
                    (s, t, u, {k: v[i] for k, v in document["data"].items()})
                    for i, (s, t, u) in enumerate(
                        zip(document["seq_num"], document["time"], document["uid"], strict=True)
                    )
                ]
            for seq_num, time, uid, data in rows:
                unique(uid)
                assert time >= descriptor["time"], (descriptor["name"], "event before descriptor")
                events[document["descriptor"]].append((seq_num, time))
                for key, value in data.items():
                    check_value(key, value, keys[key])
            last_time = max(last_time, *(r[1] for r in rows))
        elif name == "stream_resource":
            unique(document["uid"])
            assert document["run_start"] == run_uid
            resources[document["uid"]] = document
        elif name == "stream_datum":
            unique(document["uid"])
            assert document["stream_resource"] in resources
            assert document["descriptor"] in descriptors
            datums[document["stream_resource"]].append(document)
        elif name == "stop":
            unique(document["uid"])
            assert document["run_start"] == run_uid
            assert document["time"] >= last_time, ("stop before the last event", last_time)
            # events per stream: its events, or the rows its stream datums give seq_nums to
            counted = {
                d["name"]: max(
                    [len(events.get(uid, ()))]
                    + [
                        datum["seq_nums"]["stop"] - 1
                        for rows in datums.values()
                        for datum in rows
                        if datum["descriptor"] == uid
                    ]
                )
                for uid, d in descriptors.items()
            }
            assert document.get("num_events", {}) == counted, (document.get("num_events"), counted)
    for descriptor_uid, rows in events.items():
        seq_nums = [s for s, _ in rows]
        assert seq_nums == list(range(1, len(rows) + 1)), descriptors[descriptor_uid]["name"]
        times = [t for _, t in rows]
        assert times == sorted(times), ("event times go back", descriptors[descriptor_uid]["name"])
    for resource_uid, resource in resources.items():
        check_resource(resource, datums[resource_uid], descriptors, events)
    # event-model's own router takes the stream as a RunEngine's
    seen: list[str] = []

    class Seen(DocumentRouter):
        def __call__(self, name: str, document: Any, validate: bool = False) -> Any:
            seen.append(name)
            return super().__call__(name, document, validate=True)

    router = RunRouter([lambda name, document: ([Seen()], [])])
    for name, document in documents:
        router(name, document)
    plain = lambda names: [n.replace("event_page", "event") for n in names]  # noqa: E731
    assert plain(seen) == plain(names), (seen, names)  # RunRouter hands on events as pages


def check_resource(
    resource: dict[str, Any],
    datums: list[dict[str, Any]],
    descriptors: dict[str, dict[str, Any]],
    events: dict[str, list[tuple[int, float]]],
) -> None:
    assert datums, f"stream resource {resource['uid']} has no datum"
    assert resource["mimetype"] == "application/x-hdf5"
    (descriptor_uid,) = {d["descriptor"] for d in datums}
    descriptor = descriptors[descriptor_uid]
    key = descriptor["data_keys"][resource["data_key"]]
    assert key["external"] == "STREAM:"
    for before, after in itertools.pairwise(datums):
        assert before["indices"]["stop"] == after["indices"]["start"], "indices not contiguous"
        assert before["seq_nums"]["stop"] == after["seq_nums"]["start"], "seq_nums not contiguous"
    for datum in datums:
        indices, seq_nums = datum["indices"], datum["seq_nums"]
        assert indices["stop"] > indices["start"]
        assert indices["stop"] - indices["start"] == seq_nums["stop"] - seq_nums["start"]
    seq_numbers = [s for s, _ in events.get(descriptor_uid, [])]
    if seq_numbers:  # the datums' rows are those events' (seq_nums: stop exclusive)
        assert datums[0]["seq_nums"]["start"] == seq_numbers[0]
        assert datums[-1]["seq_nums"]["stop"] == seq_numbers[-1] + 1
    url = urlparse(resource["uri"])
    assert url.scheme == "file" and url.netloc in ("", "localhost"), resource["uri"]
    parameters = resource["parameters"]
    with h5py.File(url.path, "r", swmr=bool(parameters.get("swmr"))) as file:
        dataset = file[parameters["dataset"]]
        per_event = key["shape"]
        # ophyd-async's convention: shape [frames per event, *frame]
        assert list(dataset.shape[1:]) == per_event[1:], (dataset.shape, per_event)
        assert dataset.shape[0] >= datums[-1]["indices"]["stop"] * per_event[0]
        assert np.dtype(key["dtype_numpy"]) == dataset.dtype, (key["dtype_numpy"], dataset.dtype)
        assert dataset.chunks is not None
        if "chunk_shape" in parameters:  # Tiled's export of a run leaves it out
            assert list(dataset.chunks) == list(parameters["chunk_shape"]), dataset.chunks
        first = datums[0]["indices"]["start"]
        assert np.asarray(dataset[first : first + 1]).shape == (1, *dataset.shape[1:])
