"""Read a handler's partial batch response as strictly as Lambda does: an invalid one fails the whole batch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

RESPONSE_KEY = "batchItemFailures"
ITEM_KEY = "itemIdentifier"


class InvalidBatchResponseError(ValueError):
    """The response breaks the contract: Lambda would treat the whole batch as failed."""


def failed_message_ids(response: object, batch_ids: Collection[str]) -> frozenset[str]:
    """The message ids the handler reported as failed; raises InvalidBatchResponseError.

    Success: `None`, `{}`, or `batchItemFailures` empty or null. Failure of the whole batch: anything
    that is not a JSON object, an item without `itemIdentifier`, an empty or null identifier, an
    identifier that is not in this batch.

    One deliberate step beyond Lambda: an object with other keys but no `batchItemFailures` (a
    typo such as `batchItemFailure`) is rejected. Lambda would read it as "all succeeded" and
    delete every message, which is the silent loss AWS warns about.
    """
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        raise InvalidBatchResponseError(f"the response is a {type(response).__name__}, not a JSON object")
    try:
        json.dumps(response)
    except (TypeError, ValueError) as exc:
        raise InvalidBatchResponseError(f"the response is not JSON-serialisable: {exc}") from None
    if RESPONSE_KEY not in response:
        if response:
            raise InvalidBatchResponseError(f"no {RESPONSE_KEY!r} key among {sorted(response)}")
        return frozenset()
    items = response[RESPONSE_KEY]
    if items is None:
        return frozenset()
    if not isinstance(items, list):
        raise InvalidBatchResponseError(f"{RESPONSE_KEY!r} is a {type(items).__name__}, not a list")
    return frozenset(_identifier(item, batch_ids) for item in items)


def _identifier(item: object, batch_ids: Collection[str]) -> str:
    if not isinstance(item, dict) or ITEM_KEY not in item:
        raise InvalidBatchResponseError(f"an item has no {ITEM_KEY!r}: {item!r}")
    identifier = item[ITEM_KEY]
    if not isinstance(identifier, str) or not identifier:
        raise InvalidBatchResponseError(f"an {ITEM_KEY!r} is empty or not a string: {identifier!r}")
    if identifier not in batch_ids:
        raise InvalidBatchResponseError(f"{ITEM_KEY!r} {identifier!r} is not a message of this batch")
    return identifier
