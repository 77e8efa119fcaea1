"""A syntax error at the very end of a script is reported on its last line, not at 1:1."""

from __future__ import annotations

import pytest

from actors.scripting.engine import ScriptError, parse


def test_an_unclosed_bracket_at_the_end_is_on_the_last_line() -> None:
    with pytest.raises(ScriptError) as caught:
        parse("x = 1\ny = (\n")
    assert caught.value.problem.line == 2 and "end of the script" in str(caught.value)


def test_an_error_in_the_middle_keeps_starlarks_own_position() -> None:
    with pytest.raises(ScriptError) as caught:
        parse("x = 1\ny = = 2\nz = 3\n")
    assert (caught.value.problem.line, caught.value.problem.column) == (2, 5)
