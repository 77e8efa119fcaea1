"""Errors name requests briefly: a field a client filled is cut short, a container is counted,
never printed, so refusing a huge request costs no more than refusing a small one."""

from __future__ import annotations

from dataclasses import dataclass

from runtime import ActorError, SetParameter
from runtime._brief import brief


@dataclass(frozen=True)
class Big:
    name: str
    points: tuple[float, ...]
    nested: SetParameter
    count: int


def test_a_request_is_named_with_each_field_cut_short() -> None:
    text = brief(SetParameter("directory", "/" + "a" * 100_000))
    assert text.startswith("SetParameter(name='directory', value='/aaaa")
    assert "(100001 characters)" in text and len(text) < 200


def test_containers_are_counted_and_huge_ints_sized() -> None:
    big = Big("x", tuple(float(i) for i in range(1_000_000)), SetParameter("a", 1), 10**5000)
    text = brief(big)  # repr(big) would build ~20 MB first (and refuse the int)
    assert text == (
        "Big(name='x', points=<tuple of 1000000>, nested=SetParameter(…),"
        " count=<int of 16610 bits>)"
    )


def test_an_actor_error_quotes_its_request_briefly() -> None:
    error = ActorError("recorder", SetParameter("directory", "x" * 10**6), ValueError("no"),
                       crashed=False)  # fmt: skip
    assert len(str(error)) < 300 and str(error).endswith("ValueError: no")
