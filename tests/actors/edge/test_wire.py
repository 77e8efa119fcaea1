"""The wire-level field scan (``_wire.py``) and the message bounds (``errors.py``), alone.

Properties, over random inputs: the scan never raises anything but a refusal, never reads past
the message, accepts every message within the limits byte for byte, and refuses a field over
its limit after reading only the start of it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from grpclib.const import Status
from grpclib.metadata import encode_grpc_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.edge._guard import LogLimit
from actors.edge._wire import read_message
from actors.edge.errors import MESSAGE_BYTES, RequestRefused, bounded, quote
from actors.edge.limits import RequestLimits
from benchd.v1 import common_pb2, control_pb2, hardware_pb2, plan_pb2, scan_pb2, storage_pb2

LIMITS = RequestLimits()
TYPES = [
    hardware_pb2.DeviceRequest,
    hardware_pb2.SetParameterRequest,
    hardware_pb2.StreamParametersRequest,
    storage_pb2.StartRunRequest,
    scan_pb2.CreateScanRequest,
    control_pb2.StartScriptRequest,
]


class Reader:
    """The bytes of one request body; records how much was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    async def read(self, size: int) -> bytes:
        assert self.position + size <= len(self.data), "read past the message"
        piece = self.data[self.position : self.position + size]
        self.position += size
        return piece


def scan(data: bytes, kind: Any, limits: RequestLimits = LIMITS) -> tuple[bytes, Reader]:
    reader = Reader(data)

    async def main() -> bytes:
        return await read_message(reader.read, len(data), kind.DESCRIPTOR, limits)

    return trio.run(main), reader


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(TYPES), data=st.binary(max_size=300))
def test_random_bytes_are_read_whole_or_refused(kind: Any, data: bytes) -> None:
    try:
        body, reader = scan(data, kind)
    except RequestRefused as refusal:
        assert refusal.status is Status.INVALID_ARGUMENT
        assert len(encode_grpc_message(refusal.message or "")) <= MESSAGE_BYTES
        return
    assert body == data and reader.position == len(data)


names = st.text(max_size=128)
messages = st.one_of(
    st.builds(hardware_pb2.DeviceRequest, device=names),
    st.builds(
        hardware_pb2.SetParameterRequest,
        device=names,
        name=names,
        value=st.builds(common_pb2.Value, text=st.text(max_size=256)),
    ),
    st.builds(
        hardware_pb2.StreamParametersRequest, device=names, names=st.lists(names, max_size=256)
    ),
    st.builds(
        storage_pb2.StartRunRequest,
        name=names,
        metadata=st.dictionaries(names, st.text(max_size=300), max_size=20),
        metadata_json=st.text(max_size=2000),
        frames=st.integers(0, 2**32 - 1),
        duration_s=st.floats(),
    ),
    st.builds(
        scan_pb2.CreateScanRequest,
        plan=st.builds(
            plan_pb2.Plan,
            grid=st.builds(
                plan_pb2.GridPath,
                axes=st.lists(
                    st.builds(
                        plan_pb2.GridAxis,
                        axis=names,
                        start=st.floats(),
                        points=st.integers(0, 2**32 - 1),
                    ),
                    max_size=8,
                ),
            ),
            read=st.lists(names, max_size=20),
            name=names,
        ),
    ),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages)
def test_every_message_within_the_limits_is_accepted_byte_for_byte(message: Any) -> None:
    data = message.SerializeToString()
    body, _ = scan(data, type(message))
    assert body == data
    LIMITS.check(type(message).FromString(body))  # and the exact check agrees


def test_a_long_field_is_refused_after_reading_only_its_start() -> None:
    data = hardware_pb2.DeviceRequest(device="é" * 1_000_000).SerializeToString()
    with pytest.raises(RequestRefused) as caught:
        scan(data, hardware_pb2.DeviceRequest)
    assert caught.value.message == (
        f"device: at most 128 characters, got {'é' * 100!a}… (2000000 bytes)"
    )
    reader = Reader(data)
    with pytest.raises(RequestRefused):
        trio.run(
            read_message, reader.read, len(data), hardware_pb2.DeviceRequest.DESCRIPTOR, LIMITS
        )
    assert reader.position < 500  # the tag, the length, a quote's worth


def test_a_field_repeated_past_the_limit_is_refused_at_the_limit() -> None:
    request = hardware_pb2.StreamParametersRequest(names=["n"] * 100_000)
    data = request.SerializeToString()
    reader = Reader(data)
    with pytest.raises(RequestRefused) as caught:
        trio.run(read_message, reader.read, len(data), request.DESCRIPTOR, LIMITS)
    assert caught.value.message == "names: at most 256 entries, got more"
    assert reader.position < 1000


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x0a\x10ab", "device is longer (16 bytes) than its message"),
        (b"\x08" + b"\xff" * 11, "a varint longer than 10 bytes"),
        (b"\x0b", "wire type 3 (groups are not accepted)"),
        (b"\xfa\x06\x80\x80\x01" + b"z" * 16384, "field 111: an unknown field, at most 4096"),
    ],
)
def test_malformed_wire_format_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        scan(data, hardware_pb2.DeviceRequest)
    assert words in (caught.value.message or "")


def test_quote_shows_at_most_100_characters_and_the_length() -> None:
    assert quote("x" * 400_000) == f"'{'x' * 100}'… (400000 characters)"
    assert quote("short") == "'short'"
    assert quote("é") == "'\\xe9'"  # ASCII only: one header byte per character
    assert quote("ab", size=9000, unit="bytes") == "'ab'… (9000 bytes)"
    assert quote(12.5) == "12.5"


@pytest.mark.parametrize("text", ["a" * 5000, "é" * 5000, "%" * 3000, "\U0001f600" * 3000])
def test_a_status_message_is_bounded_once_encoded(text: str) -> None:
    message = bounded(f"problem: {text}")
    assert len(encode_grpc_message(message)) <= MESSAGE_BYTES
    assert message.startswith("problem: ") and message.endswith(
        f"(message cut: {len(text) + 9} characters)"
    )
    assert bounded("fine as it is") == "fine as it is"


def test_refusals_are_logged_one_line_each_up_to_a_burst_then_counted() -> None:
    limit = LogLimit(burst=20, period=10.0)
    assert [limit.take(100.0 + i * 0.01)[0] for i in range(25)] == [True] * 20 + [False] * 5
    assert limit.take(105.0) == (False, 0, 0.0)  # still the same period
    log, suppressed, since = limit.take(110.5)  # a new period: the count of those left out
    assert (log, suppressed, round(since, 1)) == (True, 6, 10.5)
    assert limit.take(111.0) == (True, 0, 0.0)
