"""Fixtures for driver tests against simulators on real pseudo-terminals."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def link(tmp_path: Path) -> Path:
    """A stable path for a simulator's port (survives disconnect/reconnect)."""
    return tmp_path / "ttySIM0"
