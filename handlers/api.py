"""The Python API: search the store, read documents, walk the graph, see what failed and what is queued.

One import for applications, notebooks and web apps; the same settings as the `filequeue` command
(`FILEQUEUE_*` environment variables, or a `Settings` object)::

    from handlers.api import FileQueue

    with FileQueue.from_env() as fq:
        for hit in fq.search("how do I feed a sourdough starter", hybrid=True, limit=3):
            print(hit.key, hit.page, round(hit.score, 4), hit.snippet)
        print(fq.document("uploads/sourdough.md").status)

Every method returns frozen dataclasses. Reads only: nothing here changes the store. The client
itself lives with the rest of the read side in `handlers.ops`; this module is its stable name.
"""

from handlers.ops.client import (
    DOCUMENT_STATUSES,
    ChunkText,
    Document,
    DocumentList,
    DocumentSummary,
    FileQueue,
    StoreStatus,
)
from handlers.ops.failed import FailedDocument
from handlers.ops.graph import Neighbour
from handlers.ops.search import SearchHit
from handlers.ops.status import QueueStatus

__all__ = [
    "DOCUMENT_STATUSES",
    "ChunkText",
    "Document",
    "DocumentList",
    "DocumentSummary",
    "FailedDocument",
    "FileQueue",
    "Neighbour",
    "QueueStatus",
    "SearchHit",
    "StoreStatus",
]
