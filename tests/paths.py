"""Where the repository's files are, for the tests that read them or run commands from its root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
PDF_FIXTURES = FIXTURES / "pdf"
EVENT_FIXTURES = FIXTURES / "events"
SAMPLE_EVENTS = REPO_ROOT / "events"
CONTAINER = REPO_ROOT / "container"
