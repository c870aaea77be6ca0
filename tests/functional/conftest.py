"""Fixtures of the process tests that start `filequeue dev`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """A data directory outside pytest's temporary root, which PostgreSQL's own user cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="filequeue-dev-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
