from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import Client, open_client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with open_client(tmp_path) as running:
        yield running
