"""What the core needs from the world. Adapters implement these Protocols; the core imports only these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from handlers.model import Chunk, DocumentLinks, ExtractedText, FetchedObject, ObjectRef


class ObjectStore(Protocol):
    def fetch(self, ref: ObjectRef, directory: str) -> FetchedObject:
        """Download the exact object version of `ref` into a new file under `directory`.

        Raises PermanentError (missing, too large) or TransientError (throttling, network).
        """
        ...


class Embedder(Protocol):
    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; batching and concurrency are the adapter's business."""
        ...


class Repository(Protocol):
    def should_process(self, ref: ObjectRef) -> str | None:
        """None if the event is newer than what is stored; otherwise the reason to skip it."""
        ...

    def mark_unchanged(self, ref: ObjectRef, sha256: str) -> bool:
        """If the stored document has these bytes, record the new version and return True."""
        ...

    def store_document(
        self,
        fetched: FetchedObject,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        embedding_model: str,
        *,
        links: DocumentLinks,
    ) -> str | None:
        """Replace the document and its chunks and edges in one transaction.

        `links` were found before: the transaction only writes them and links what they resolve to.

        The edges are the structure (`has_chunk`, `next`) and the graph: `similar` to the nearest
        stored documents and `references` to and from the documents it mentions or that mention it.
        Returns None when written, or the reason it was skipped (a newer event won meanwhile).
        """
        ...

    def record_failure(self, ref: ObjectRef, code: str, message: str, sha256: str | None = None) -> str | None:
        """Mark the document failed (its old chunks removed); None if written, else the skip reason."""
        ...

    def delete_document(self, ref: ObjectRef) -> str | None:
        """Remove the document, its chunks and edges; None if done, else the skip reason."""
        ...


class MessageFailures(Protocol):
    def note_message_failure(self, message_id: str, receive_count: int, code: str, message: str) -> None:
        """Keep why a message failed, by message id: SQS keeps the id when it moves the message to the DLQ."""
        ...
