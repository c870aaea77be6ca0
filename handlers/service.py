"""Orchestration of one object event over the ports; the one place where failures are classified.

Permanent failures (the file itself is at fault) are recorded on the document row and the event is
acknowledged. Everything else propagates: the batch layer reports it in `batchItemFailures` so SQS
redelivers the message and, after the last receive, moves it to the DLQ.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.errors import PermanentError, TransientError
from handlers.model import ChunkingOptions, EventKind, Outcome
from handlers.stages.chunking import chunk_document
from handlers.stages.mentions import find_mentions

if TYPE_CHECKING:
    from collections.abc import Callable

    from handlers.model import ExtractedText, FetchedObject, ObjectRef
    from handlers.ports import Embedder, ObjectStore, Repository


@dataclass(frozen=True, slots=True)
class Deps:
    """The adapters one process uses, built once from settings and reused across invocations."""

    store: ObjectStore
    embedder: Embedder
    repository: Repository
    extract: Callable[[FetchedObject, float], ExtractedText]
    """`extract(fetched, work_deadline)`: bounded by its own limit and by the monotonic `work_deadline`."""
    chunking: ChunkingOptions
    scratch_dir: str | None = None
    # The time bound of extraction applies to the other passes over the extracted text too.
    analysis_timeout_seconds: float = 120.0


def process_ref(ref: ObjectRef, deps: Deps, work_deadline: float = math.inf) -> Outcome:
    """Process one object event; extraction and embedding must end by `work_deadline` (monotonic clock).

    The time after `work_deadline` is kept for the database write, so a record never runs out the clock
    mid-write: work that cannot finish in time is retried (TransientError), not recorded against the file.
    """
    if ref.kind is EventKind.REMOVED:
        reason = deps.repository.delete_document(ref)
        return Outcome("skipped", ref, reason) if reason else Outcome("deleted", ref)
    reason = deps.repository.should_process(ref)
    if reason:
        return Outcome("skipped", ref, reason)
    with tempfile.TemporaryDirectory(prefix="filequeue-", dir=deps.scratch_dir) as workdir:
        try:
            fetched = deps.store.fetch(ref, workdir)
        except PermanentError as error:
            return _record_failure(deps, ref, error, sha256=None)
        if deps.repository.mark_unchanged(ref, fetched.sha256):
            return Outcome("unchanged", ref, f"same content as stored (sha256 {fetched.sha256[:12]})")
        try:
            extracted = deps.extract(fetched, work_deadline)
            chunks = chunk_document(extracted, deps.chunking)
            if not chunks:
                raise PermanentError("the file has no extractable text", code="no_text")
            # Before the document's transaction, so that no lock is held while the text is read.
            mentions = find_mentions(
                extracted.text,
                bucket=ref.bucket,
                key=ref.key,
                links=extracted.links,
                check_budget=_time_budget(deps.analysis_timeout_seconds, work_deadline),
            )
        except PermanentError as error:
            return _record_failure(deps, ref, error, sha256=fetched.sha256)
    vectors = deps.embedder.embed([chunk.text for chunk in chunks])
    if time.monotonic() > work_deadline:
        raise TransientError("embedding ran into the time kept for the write; retried", code="deadline")
    try:
        reason = deps.repository.store_document(
            fetched, extracted, chunks, vectors, deps.embedder.model, mentions=mentions
        )
    except PermanentError as error:
        return _record_failure(deps, ref, error, sha256=fetched.sha256)
    if reason:
        return Outcome("skipped", ref, reason)
    return Outcome("stored", ref, extracted.content_type, chunks=len(chunks))


def _time_budget(seconds: float, work_deadline: float) -> Callable[[], None]:
    """A check that stops a pass over the text: the runtime's deadline first (retried), then the file's own bound."""
    deadline = time.monotonic() + seconds

    def check() -> None:
        now = time.monotonic()
        if now > work_deadline:
            raise TransientError("reading the links ran into the time kept for the write; retried", code="deadline")
        if now > deadline:
            raise PermanentError(
                f"reading the links of the text took longer than {seconds:g} s", code="extract_timeout"
            )

    return check


def _record_failure(deps: Deps, ref: ObjectRef, error: PermanentError, sha256: str | None) -> Outcome:
    reason = deps.repository.record_failure(ref, error.code, str(error), sha256)
    if reason:
        return Outcome("skipped", ref, reason)
    return Outcome("failed", ref, str(error), error_code=error.code)
