"""Orchestration of one object event over the ports; the one place where failures are classified.

`process_ref` is the whole pipeline, one call per step: (the batch layer has parsed the event) stale
check, fetch, unchanged check, extract, chunk, embed, link, store, outcome. The stages are pure; the
adapters behind the ports only fetch, embed and write what they are given.

Permanent failures (the file itself is at fault) are recorded on the document row and the event is
acknowledged. Everything else propagates: the batch layer reports it in `batchItemFailures` so SQS
redelivers the message and, after the last receive, moves it to the DLQ.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.errors import ErrorCode, PermanentError, TransientError
from handlers.model import ChunkingOptions, DocumentLinks, EventKind, Outcome, OutcomeStatus
from handlers.stages.chunking import chunk_document
from handlers.stages.mentions import document_names, find_mentions

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from handlers.budget import ExtractionTime, RecordBudget
    from handlers.model import Chunk, ExtractedText, FetchedObject, ObjectRef
    from handlers.ports import Embedder, MessageFailures, ObjectStore, Repository


@dataclass(frozen=True, slots=True)
class Deps:
    """The adapters one process uses, built once from settings and reused across invocations."""

    store: ObjectStore
    embedder: Embedder
    repository: Repository
    message_failures: MessageFailures
    """Where the batch layer keeps why a message failed, for the failures no document row can hold."""
    extract: Callable[[FetchedObject, ExtractionTime], ExtractedText]
    """`extract(fetched, time)`: bounded by `time`, which also says whose fault a timeout is."""
    chunking: ChunkingOptions
    scratch_dir: str | None = None
    # The time bound of extraction applies to the other passes over the extracted text too.
    analysis_timeout_seconds: float = 120.0


def process_ref(ref: ObjectRef, deps: Deps, budget: RecordBudget) -> Outcome:
    """Process one object event within the record's `budget`.

    Extraction, embedding and linking end by the budget's work deadline; the time after it is kept for
    the database write, so a record never runs out the clock mid-write: work that cannot finish in time
    is retried (TransientError), not recorded against the file. A PermanentError at any step is recorded
    on the document row instead of the document; one that the row cannot hold (the database refuses the
    key itself) propagates as it is, for the batch layer to keep by message id.
    """
    work_deadline = budget.work_deadline
    if ref.kind is EventKind.REMOVED:
        return _deleted(ref, deps.repository.delete_document(ref))
    if reason := deps.repository.should_process(ref):
        return Outcome(OutcomeStatus.SKIPPED, ref, reason)
    fetched: FetchedObject | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="filequeue-", dir=deps.scratch_dir) as workdir:
            fetched = deps.store.fetch(ref, workdir)
            if deps.repository.mark_unchanged(ref, fetched.sha256):
                return Outcome(OutcomeStatus.UNCHANGED, ref, f"same content as stored (sha256 {fetched.sha256[:12]})")
            extracted = deps.extract(fetched, budget.extraction(time.monotonic()))
        chunks = _chunk(extracted, deps.chunking)
        vectors = _embed(deps.embedder, chunks, work_deadline)
        links = _link(ref, extracted, _time_budget(deps.analysis_timeout_seconds, work_deadline))
        reason = deps.repository.store_document(fetched, extracted, chunks, vectors, deps.embedder.model, links=links)
    except PermanentError as error:
        return _record_failure(deps, ref, error, sha256=fetched.sha256 if fetched else None)
    if reason:
        return Outcome(OutcomeStatus.SKIPPED, ref, reason)
    return Outcome(OutcomeStatus.STORED, ref, extracted.content_type, chunks=len(chunks))


def _deleted(ref: ObjectRef, skip_reason: str | None) -> Outcome:
    return Outcome(OutcomeStatus.SKIPPED, ref, skip_reason) if skip_reason else Outcome(OutcomeStatus.DELETED, ref)


def _chunk(extracted: ExtractedText, options: ChunkingOptions) -> list[Chunk]:
    chunks = chunk_document(extracted, options)
    if not chunks:
        raise PermanentError("the file has no extractable text", code=ErrorCode.NO_TEXT)
    return chunks


def _embed(embedder: Embedder, chunks: Sequence[Chunk], work_deadline: float) -> list[list[float]]:
    vectors = embedder.embed([chunk.text for chunk in chunks])
    if time.monotonic() > work_deadline:
        raise TransientError("embedding ran into the time kept for the write; retried", code=ErrorCode.DEADLINE)
    return vectors


def _link(ref: ObjectRef, extracted: ExtractedText, check_budget: Callable[[], None]) -> DocumentLinks:
    """The names the document goes by and what its text mentions, found before its transaction holds a lock."""
    mentions = find_mentions(
        extracted.text, bucket=ref.bucket, key=ref.key, links=extracted.links, check_budget=check_budget
    )
    return DocumentLinks(names=document_names(ref.bucket, ref.key), mentions=mentions)


def _time_budget(seconds: float, work_deadline: float) -> Callable[[], None]:
    """A check that stops a pass over the text: the runtime's deadline first (retried), then the file's own bound."""
    deadline = time.monotonic() + seconds

    def check() -> None:
        now = time.monotonic()
        if now > work_deadline:
            raise TransientError(
                "reading the links ran into the time kept for the write; retried", code=ErrorCode.DEADLINE
            )
        if now > deadline:
            raise PermanentError(
                f"reading the links of the text took longer than {seconds:g} s", code=ErrorCode.EXTRACT_TIMEOUT
            )

    return check


def _record_failure(deps: Deps, ref: ObjectRef, error: PermanentError, sha256: str | None) -> Outcome:
    reason = deps.repository.record_failure(ref, error.code, str(error), sha256)
    if reason:
        return Outcome(OutcomeStatus.SKIPPED, ref, reason)
    return Outcome(OutcomeStatus.FAILED, ref, str(error), error_code=error.code)
