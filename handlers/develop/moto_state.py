"""The dev stack's S3 and SQS kept across restarts, as PostgreSQL keeps the store.

moto holds buckets, objects, queues and messages in this process's memory: its backends for S3 and
SQS (dicts of account -> region -> backend) are pickled into the data directory every few seconds
while something changed, and at every stop, and loaded back at the next start. The file is written
to a temporary name and renamed, so a crash leaves the previous snapshot whole.
"""

from __future__ import annotations

import _thread
import io
import os
import pickle
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

SERVICES = ("s3", "sqs")
SNAPSHOT_FILE = "moto-state.pickle"
PORT_FILE = "moto-port"
RUNNING_FILE = "dev-running"
SNAPSHOT_INTERVAL_SECONDS = 2.0
_FORMAT = 1
_RLOCK = type(threading.RLock())


@dataclass(frozen=True)
class Snapshot:
    saved_at: datetime
    backends: dict[str, dict[str, Any]]


class _LockFreePickler(pickle.Pickler):
    """Pickles moto's backends; their locks (which cannot be pickled) come back as fresh, released ones."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _RLOCK):
            return threading.RLock, ()
        if isinstance(obj, _thread.LockType):
            return threading.Lock, ()
        return NotImplemented


def _current_backends() -> dict[str, dict[str, Any]]:
    from moto.backends import get_backend

    return {service: dict(get_backend(service)) for service in SERVICES}  # type: ignore[call-overload]  # SERVICES holds literal names moto knows; mypy sees a plain str


def save(path: Path) -> None:
    """Write moto's S3 and SQS state to `path`, atomically."""
    buffer = io.BytesIO()
    # Requests keep being served while this runs: a dict that changes size under the pickler raises,
    # and the next try pickles the state as it is then.
    for attempt in range(5):
        buffer.seek(0)
        buffer.truncate()
        try:
            _LockFreePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
                {"format": _FORMAT, "saved_at": datetime.now(UTC), "backends": _current_backends()}
            )
            break
        except RuntimeError:
            if attempt == 4:
                raise
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(buffer.getvalue())
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def load(path: Path) -> Snapshot | None:
    """The snapshot at `path` (None when there is none); a file that cannot be read is a ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"the saved S3 and SQS state {path} cannot be read: {error.strerror or error}") from None
    try:
        # Only ever a file this tool wrote into the user's own data directory: unpickling trusts it as the
        # user trusts their PostgreSQL data next to it. Never point --data-dir at a directory from elsewhere.
        state = pickle.loads(data)  # noqa: S301  (our own file in the user's data directory, see above)
        if state.get("format") != _FORMAT:
            raise ValueError(f"format {state.get('format')!r}, expected {_FORMAT}")
        return Snapshot(saved_at=state["saved_at"], backends=state["backends"])
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means the same thing: unusable
        raise ConfigError(
            f"the saved S3 and SQS state {path} cannot be read ({type(error).__name__}: {error})"
        ) from None


def restore(snapshot: Snapshot) -> None:
    """Put the snapshot's buckets, objects, notifications, queues and messages into moto."""
    from moto.backends import get_backend

    for service, accounts in snapshot.backends.items():
        backends: Any = get_backend(service)  # type: ignore[call-overload]  # a name from SERVICES
        backends.update(accounts)
        for account in accounts:
            # Looking the account up registers the backend with moto, so /moto-api/reset clears it at stop.
            backends[account]


class RequestCounter:
    """WSGI middleware counting the requests that call for a new snapshot.

    Reads are not counted, nor are receives: an idle worker long-polls all the time, and a snapshot
    after each empty receive would pickle every object over and over. What a receive changes (a
    receive count, a move to the DLQ) is saved with the next counted request or at the stop; after
    a crash it is lost, and the message is delivered once more.
    """

    _UNCOUNTED_SQS = frozenset(
        {
            "AmazonSQS.ListQueues",
            "AmazonSQS.GetQueueUrl",
            "AmazonSQS.GetQueueAttributes",
            "AmazonSQS.ListQueueTags",
            "AmazonSQS.ReceiveMessage",
        }
    )

    def __init__(self, app: Any) -> None:
        self._app = app
        self.changes = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self._app(environ, start_response)
        finally:
            uncounted = environ.get("REQUEST_METHOD") in {"GET", "HEAD"} or (
                environ.get("HTTP_X_AMZ_TARGET") in self._UNCOUNTED_SQS
            )
            if not uncounted:
                self.changes += 1


class Keeper:
    """Saves a snapshot every few seconds while requests changed something, and a last one at `stop`."""

    def __init__(self, path: Path, counter: RequestCounter, interval: float = SNAPSHOT_INTERVAL_SECONDS) -> None:
        self._path = path
        self._counter = counter
        self._interval = interval
        self._saved_changes = counter.changes
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moto-snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._save_if_changed()
            except OSError as error:  # a full disk: say so, keep serving, try again at the next change
                sys.stderr.write(f"filequeue: cannot save the S3 and SQS state to {self._path}: {error}\n")

    def _save_if_changed(self) -> None:
        changes = self._counter.changes
        if changes != self._saved_changes:
            save(self._path)
            self._saved_changes = changes

    def stop(self) -> None:
        """Stop the periodic snapshots and save the state as it is now."""
        self._stopping.set()
        self._thread.join()
        save(self._path)
