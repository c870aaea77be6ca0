"""`filequeue demo` and `filequeue dev`: the whole pipeline on the embedded stack.

moto's server delivers real S3 notifications to a real SQS queue (with a DLQ after 3 receives),
the worker long-polls it exactly as it would in a pod, and pgserver provides PostgreSQL with pgvector.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from handlers.develop import moto_state
from handlers.develop.devstack import (
    MotoServer,
    aws_client,
    create_ingest_resources,
    find_ingest_resources,
    local_settings_environment,
    start_postgres,
)
from handlers.errors import ConfigError
from handlers.ops.db import session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from datetime import datetime

    from handlers.develop.devstack import IngestResources
    from handlers.settings import Settings

# Upload key -> file in handlers/develop/files (package data). The PDFs are real files copied from
# the test corpus (their sources and licences in files/SOURCES.md and files/LICENSES/), but for the scan,
# which this project rendered from one of them; the Markdown and HTML were written for the demo.
DEMO_FILES: dict[str, str] = {
    "uploads/getting-started.md": "getting-started.md",
    "uploads/jit-compilers.html": "jit-compilers.html",
    "uploads/tracemonkey.pdf": "pdfjs-tracemonkey-14-pages-two-column.pdf",
    "uploads/bitcoin.pdf": "pdfjs-issue13201-bitcoin-paper.pdf",
    "uploads/bitcoin-scan.pdf": "pdfjs-issue13201-bitcoin-paper-scanned.pdf",
    "uploads/crazy-ones.pdf": "pypdf-crazyones-ligatures.pdf",
    "uploads/crazy-ones-annotated.pdf": "pypdf-attachment.pdf",
    "uploads/secret.pdf": "pdfminer-enc-aes-128-user-baz-owner-foo.pdf",
    "uploads/broken.pdf": "qpdf-bad1-5-bytes.pdf",
}
REUPLOADED = "uploads/getting-started.md"
SAMPLE_QUERY = "trace-based just-in-time compilation of JavaScript loops"


@dataclass(frozen=True)
class Restored:
    """Where a dev stack's S3 and SQS came from: the snapshot of `saved_at`, taken at a stop or before a crash."""

    saved_at: datetime
    stopped_cleanly: bool


@dataclass
class LocalStack:
    moto: MotoServer
    database_url: str
    resources: IngestResources
    environment: dict[str, str]
    _postgres: Any = field(repr=False)
    _data_dir: Path | None = field(repr=False, default=None)
    restored: Restored | None = None
    _keeper: moto_state.Keeper | None = field(repr=False, default=None)
    _running_marker: Path | None = field(repr=False, default=None)

    def stop(self) -> None:
        try:
            if self._keeper is not None:
                self._save_last_snapshot(self._keeper)
        finally:
            self.moto.stop()
            self._postgres.cleanup()
            if self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)

    def _save_last_snapshot(self, keeper: moto_state.Keeper) -> None:
        try:
            keeper.stop()
        except OSError as error:
            _stderr_line(
                f"filequeue: cannot save the S3 and SQS state at stop ({error});"
                " the next start restores the last snapshot"
            )
            return
        if self._running_marker is not None:
            self._running_marker.unlink(missing_ok=True)


def start_local_stack(
    data_dir: Path | None = None, *, visibility_timeout: int = 60, versioned: bool = True
) -> LocalStack:
    """Start moto (S3, SQS, DLQ wired like the CDK app) and pgserver; a temporary data dir unless given."""
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="filequeue-")) if data_dir is None else data_dir
    # A failure or a Ctrl-C halfway stops what already started: no PostgreSQL left behind to trip the next start.
    with ExitStack() as started:
        database_url, postgres = start_postgres(root / "pgdata")
        started.callback(postgres.cleanup)
        moto = MotoServer.start()
        started.callback(moto.stop)
        ingest = create_ingest_resources(moto.endpoint_url, visibility_timeout=visibility_timeout, versioned=versioned)
        environment = local_settings_environment(database_url, moto.endpoint_url, ingest.queue_url)
        started.pop_all()  # from here on LocalStack.stop owns them
    return LocalStack(moto, database_url, ingest, environment, postgres, root if temporary else None)


def start_dev_stack(data_dir: Path, *, reset: bool = False) -> LocalStack:
    """The stack of `filequeue dev`: its bucket, objects, queues and messages come back with PostgreSQL.

    moto serves on the port recorded in `data_dir` (so the exports printed last time stay valid) and
    starts from the snapshot there. Without a snapshot, a store that holds documents is refused: an
    empty bucket over it would look as if every object had been deleted (`filequeue reconcile`
    would plan to delete every document). `reset` empties the store and the snapshot first.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file, snapshot_file = data_dir / moto_state.PORT_FILE, data_dir / moto_state.SNAPSHOT_FILE
    running_marker = data_dir / moto_state.RUNNING_FILE
    port = _recorded_port(port_file)
    with ExitStack() as started:
        try:
            moto = MotoServer.start(port)
        except OSError as error:
            raise ConfigError(
                f"port {port}, recorded in {port_file} so that the exports printed before stay valid, is in use"
                f" ({error.strerror or error}): stop what listens on it (another `filequeue dev` on {data_dir}?),"
                f" or remove {port_file} to take a new port"
            ) from None
        started.callback(moto.stop)
        if reset:
            for kept in (snapshot_file, running_marker):
                kept.unlink(missing_ok=True)
            shutil.rmtree(data_dir / "pgdata", ignore_errors=True)
        snapshot = moto_state.load(snapshot_file)
        database_url, postgres = start_postgres(data_dir / "pgdata")
        started.callback(postgres.cleanup)
        restored = None
        if snapshot is None:
            _refuse_an_empty_bucket_over_documents(database_url, data_dir, snapshot_file)
            ingest = create_ingest_resources(moto.endpoint_url, versioned=False)
            moto_state.save(snapshot_file)
        else:
            moto_state.restore(snapshot)
            ingest = find_ingest_resources(moto.endpoint_url)
            restored = Restored(snapshot.saved_at, stopped_cleanly=not running_marker.exists())
        _write_atomically(port_file, f"{moto.port}\n")
        running_marker.write_text(f"{os.getpid()}\n")
        keeper = moto_state.Keeper(snapshot_file, moto.requests)
        keeper.start()
        environment = local_settings_environment(database_url, moto.endpoint_url, ingest.queue_url)
        started.pop_all()  # from here on LocalStack.stop owns them
    return LocalStack(moto, database_url, ingest, environment, postgres, None, restored, keeper, running_marker)


def _recorded_port(port_file: Path) -> int:
    """The port the last `filequeue dev` on this data directory served on; 0 (any free port) the first time."""
    try:
        text = port_file.read_text().strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{port_file} should hold a TCP port, not {text[:40]!r}; remove it to take a new port")
    return int(text)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _refuse_an_empty_bucket_over_documents(database_url: str, data_dir: Path, snapshot_file: Path) -> None:
    with session(_settings_for(database_url), allow_pending_migrations=True) as conn:
        exists = conn.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()
        row = conn.execute("SELECT count(*) FROM documents").fetchone() if exists and exists[0] else None
    documents = int(row[0]) if row else 0
    if documents:
        stored = f"{documents} document" + ("" if documents == 1 else "s")
        raise ConfigError(
            f"{data_dir} holds {stored} in PostgreSQL but no saved S3 and SQS state ({snapshot_file.name}):"
            " an empty bucket over them would look as if every object had been deleted;"
            f" start with --reset to empty the store too, or remove {data_dir}"
        )


def demo_file_bytes(name: str) -> bytes:
    return resources.files("handlers.develop.files").joinpath(name).read_bytes()


@dataclass(frozen=True)
class DemoReport:
    files: int
    seconds: float
    outcomes: dict[str, int]
    stored: int
    failed: list[tuple[str, str, str]]
    chunks: int
    edges: dict[str, int]
    queue_left: int
    dead_letters: int


def upload_demo_files(environment: dict[str, str], bucket: str, files: dict[str, str]) -> None:
    s3 = aws_client("s3", environment)
    for key, source in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=demo_file_bytes(source))


@contextmanager
def running_worker(
    environment: dict[str, str], processes: int, *, health_port: int = 0, log: IO[bytes] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`filequeue worker` as a child process; SIGTERM on exit, as Kubernetes would stop it.

    Its JSON logs go to `log` (or this terminal): a file, never a pipe nobody reads, which would
    block the worker once the pipe's buffer is full.
    """
    # A short long-poll keeps the stop quick: a worker finishes its receive before it exits.
    env = {
        **os.environ,
        **environment,
        "FILEQUEUE_HEALTH_PORT": str(health_port),
        "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": os.environ.get("FILEQUEUE_WORKER_WAIT_TIME_SECONDS", "5"),
    }
    command = [sys.executable, "-m", "handlers.cli", "worker", "--processes", str(processes)]
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=log)  # noqa: S603
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def wait_until_processed(
    database_url: str,
    expected_documents: int,
    *,
    timeout: float,
    worker: subprocess.Popen[bytes],
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> None:
    """Block until `expected_documents` rows exist (stored or failed), or fail with the worker's output."""
    import psycopg

    deadline = time.monotonic() + timeout
    done = -1
    # One connection for the whole wait: a new one every poll would cost the server a backend each time.
    # The worker migrates the store as it starts, so the wait may begin before the tables exist.
    with session(_settings_for(database_url), allow_pending_migrations=True) as conn:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise ConfigError(f"the worker exited with code {worker.returncode}")
            try:
                row = conn.execute("SELECT count(*) FROM documents").fetchone()
            except psycopg.errors.UndefinedTable:
                row = (0,)
            current = int(row[0]) if row else 0
            if current != done:
                done = current
                on_progress(done, expected_documents)
            if done >= expected_documents:
                return
            time.sleep(0.2)
    raise ConfigError(f"only {done} of {expected_documents} files were processed within {timeout:.0f} s")


def _settings_for(database_url: str) -> Settings:
    from handlers.settings import Settings

    return Settings.from_env({"FILEQUEUE_DATABASE_URL": database_url})


def count_outcomes(log_lines: Iterable[str]) -> dict[str, int]:
    """Count per-record outcomes (stored, unchanged, skipped, failed, ...) in the handler's JSON logs."""
    outcomes: Counter[str] = Counter()
    for line in log_lines:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("location", "")).startswith("_log_record") and "outcome" in entry:
            outcomes[str(entry["outcome"])] += 1
    return dict(sorted(outcomes.items()))


def collect_report(stack: LocalStack, files: int, seconds: float, outcomes: dict[str, int]) -> DemoReport:
    from handlers.ops.graph import link

    settings = _settings_for(stack.database_url)
    with session(settings) as conn:
        # The worker's compaction links `similar` neighbours once a minute; the demo ends sooner.
        link(conn, settings)
        stored_row = conn.execute("SELECT count(*) FROM documents WHERE status = 'ready'").fetchone()
        failed = [
            (str(key), str(code), str(error))
            for key, code, error in conn.execute(
                "SELECT key, error_code, error FROM documents WHERE status = 'failed' ORDER BY key"
            )
        ]
        chunks_row = conn.execute("SELECT count(*) FROM chunks").fetchone()
        edges = {
            str(relation): int(count)
            for relation, count in conn.execute(
                "SELECT relation, count(*) FROM edges GROUP BY relation ORDER BY relation"
            )
        }
    sqs = aws_client("sqs", stack.environment)
    return DemoReport(
        files=files,
        seconds=seconds,
        outcomes=outcomes,
        stored=int(stored_row[0]) if stored_row else 0,
        failed=failed,
        chunks=int(chunks_row[0]) if chunks_row else 0,
        edges=edges,
        queue_left=_queue_depth(sqs, stack.resources.queue_url),
        dead_letters=_queue_depth(sqs, stack.resources.dlq_url),
    )


def ocr_environment(settings: Settings) -> tuple[dict[str, str], str | None]:
    """What the stack's worker needs for OCR: FILEQUEUE_OCR=off, and the line saying why, when Tesseract is missing.

    The embedded stack runs without the engine: scans and images are then recorded as without OCR.
    """
    if not settings.ocr or shutil.which(settings.ocr_tesseract) is not None:
        return {}, None
    return {"FILEQUEUE_OCR": "off"}, (
        f"OCR unavailable: {settings.ocr_tesseract!r} not found (apt-get install tesseract-ocr tesseract-ocr-eng);"
        " scanned PDFs are recorded as no_text and images as unsupported_type, as with FILEQUEUE_OCR=off"
    )


def run_demo(processes: int, *, settings: Settings, out: Callable[[str], None] = print) -> DemoReport:
    out("starting the embedded stack: moto (S3, SQS, DLQ) and PostgreSQL with pgvector ...")
    stack = start_local_stack()
    lines: list[str] = []
    try:
        out(f"  bucket s3://{stack.resources.bucket}/{stack.resources.prefix} -> {stack.resources.queue_url}")
        ocr, unavailable = ocr_environment(settings)
        stack.environment.update(ocr)
        if unavailable:
            out(unavailable)
        started = time.monotonic()
        upload_demo_files(stack.environment, stack.resources.bucket, DEMO_FILES)
        # The same bytes again under the same key: a new version whose content is already stored.
        upload_demo_files(stack.environment, stack.resources.bucket, {REUPLOADED: DEMO_FILES[REUPLOADED]})
        out(f"uploaded {len(DEMO_FILES)} files (one twice); running `filequeue worker --processes {processes}` ...")
        with tempfile.TemporaryFile() as log:
            try:
                with running_worker(stack.environment, processes, log=log) as worker:
                    wait_until_processed(
                        stack.database_url, len(DEMO_FILES), timeout=300, worker=worker, on_progress=_progress_bar
                    )
                    seconds = time.monotonic() - started
                    _wait_for_empty_queue(stack)
            finally:
                sys.stderr.write("\n")
                log.seek(0)
                lines.extend(log.read().decode(errors="replace").splitlines())
            outcomes = count_outcomes(lines)
        report = collect_report(stack, len(DEMO_FILES), seconds, outcomes)
        _print_report(report, out)
        out(f"\n$ filequeue search {SAMPLE_QUERY!r} --hybrid --limit 3")
        out(_run_cli(stack.environment, "search", SAMPLE_QUERY, "--hybrid", "--limit", "3"))
        out("$ filequeue graph uploads/tracemonkey.pdf")
        out(_run_cli(stack.environment, "graph", "uploads/tracemonkey.pdf"))
        return report
    except ConfigError:
        out("\n".join(["worker log (last lines):", *lines[-40:]]))
        raise
    finally:
        stack.stop()


def run_dev(
    data_dir: Path,
    processes: int,
    health_port: int,
    *,
    settings: Settings,
    reset: bool = False,
    as_json: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Keep the stack and a worker running until Ctrl-C, SIGTERM or SIGHUP, printing how to use it.

    The next start on the same `data_dir` finds the same bucket, objects, queues and messages on the
    same endpoint (see `start_dev_stack`).

    The bucket is unversioned: moto sends no `ObjectRemoved:DeleteMarkerCreated` when a versioned
    object is deleted, so only an unversioned bucket delivers `aws s3 rm` to the worker, through the
    same notification path as every other event.
    """
    port = free_health_port(health_port)
    with _signals_stop_like_ctrl_c():
        with _stop_deferred() as stop_requested:
            stack = start_dev_stack(data_dir, reset=reset)
        if stop_requested:
            stack.stop()
            _stderr_line("stopped while starting")
            return 0
        try:
            ocr, unavailable = ocr_environment(settings)
            environment = {**stack.environment, **embedder_environment(settings), **ocr}
            try:
                if unavailable:
                    _stderr_line(unavailable)
                _announce(stack, environment, health_port, port, as_json=as_json, out=out)
                sys.stdout.flush()  # a script reading the announcement from a pipe gets it now
                # The worker's JSON logs go to stderr: stdout carries only what a user copies (the exports).
                with running_worker(environment, processes, health_port=port, log=sys.stderr.buffer) as worker:
                    code = _wait_interruptibly(worker)
            except KeyboardInterrupt:
                _stderr_line("stopping ...")
                return 0
            _stderr_line(f"the worker exited with code {code}; stopping the stack")
            return 1
        finally:
            stack.stop()


# AWS CLI v1 sends `aws sqs` in us-east-1 to queue.amazonaws.com, whatever AWS_ENDPOINT_URL says, unless
# --endpoint-url is on the command line (awscli/customizations/overridesslcommonname.py): the shell
# function puts it there for every `aws` command, which S3 and version 2 of the CLI take as well.
AWS_CLI_FUNCTION = 'aws() { command aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }'
AWS_CLI_FUNCTION_WHY = "# so that `aws sqs` reaches the dev stack too (AWS CLI v1 ignores AWS_ENDPOINT_URL for SQS):"


def _restored_line(stack: LocalStack, restored: Restored) -> str:
    s3, sqs = aws_client("s3", stack.environment), aws_client("sqs", stack.environment)
    objects = sum(
        page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.resources.bucket)
    )
    contents = (
        f"{objects} object{'' if objects == 1 else 's'} in s3://{stack.resources.bucket},"
        f" {_queue_depth(sqs, stack.resources.queue_url)} queued,"
        f" {_queue_depth(sqs, stack.resources.dlq_url)} in the DLQ"
    )
    saved_at = restored.saved_at.astimezone().isoformat(sep=" ", timespec="seconds")
    if restored.stopped_cleanly:
        return f"restored S3 and SQS as the last stop left them ({saved_at}): {contents}"
    return (
        f"the last `filequeue dev` on this data directory did not stop cleanly: restored S3 and SQS from its"
        f" last snapshot, taken {saved_at} ({contents}); what changed after it is lost, and"
        f" `filequeue reconcile --bucket {stack.resources.bucket} --dry-run` shows how the store differs"
    )


def _wait_interruptibly(process: subprocess.Popen[bytes]) -> int:
    """The process's exit code, waiting in short steps.

    A stop signal may be delivered to any thread (moto's, the snapshots'); its Python handler then waits
    for the main thread to run bytecode, which a plain `wait()` blocked in waitpid never does.
    """
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue


def embedder_environment(settings: Settings) -> dict[str, str]:
    """The embedder settings, so a shell using the exports embeds queries as the worker embeds chunks."""
    return {
        "FILEQUEUE_EMBEDDER": settings.embedder,
        "FILEQUEUE_EMBEDDING_MODEL": settings.resolved_embedding_model,
        "FILEQUEUE_EMBEDDING_DIMENSION": str(settings.embedding_dimension),
    }


def free_health_port(preferred: int) -> int:
    """`preferred` if nothing listens on it, else a free port chosen by the system (0 stays 0: disabled)."""
    if preferred == 0:
        return 0
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))  # noqa: S104 - the interface the worker's health server binds
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise ConfigError("no free TCP port for the worker's health server; set FILEQUEUE_HEALTH_PORT=0 to disable it")


def _announce(
    stack: LocalStack,
    environment: dict[str, str],
    wanted_port: int,
    port: int,
    *,
    as_json: bool,
    out: Callable[[str], None],
) -> None:
    resources = stack.resources
    restored = stack.restored
    if as_json:
        summary = {
            "environment": environment,
            "shell": AWS_CLI_FUNCTION,
            "bucket": resources.bucket,
            "prefix": resources.prefix,
            "queue_url": resources.queue_url,
            "dead_letter_queue_url": resources.dlq_url,
            "health_port": port,
            "restored": None
            if restored is None
            else {
                "saved_at": restored.saved_at.isoformat(timespec="seconds"),
                "stopped_cleanly": restored.stopped_cleanly,
            },
        }
        out(json.dumps(summary))
        return
    if restored is not None:
        out(_restored_line(stack, restored))
    if port != wanted_port:
        out(f"port {wanted_port} is in use; the worker's health server listens on {port}")
    out("File Queue dev stack is running. In another shell:")
    for name, value in sorted(environment.items()):
        out(f"  export {name}={shlex.quote(value)}")
    out(f"  {AWS_CLI_FUNCTION_WHY}")
    out(f"  {AWS_CLI_FUNCTION}")
    out(f"  aws s3 cp ./notes.md s3://{resources.bucket}/{resources.prefix}notes.md")
    out("  filequeue search 'your words'")
    out(f"queue:    {resources.queue_url}")
    out(f"DLQ:      {resources.dlq_url}")
    out(
        f"embedder: {environment['FILEQUEUE_EMBEDDER']} {environment['FILEQUEUE_EMBEDDING_MODEL']}"
        f" (dimension {environment['FILEQUEUE_EMBEDDING_DIMENSION']})"
    )
    if environment["FILEQUEUE_EMBEDDER"] == "hashing":
        out(
            "          lexical, for demos and tests: it matches words, not meaning;"
            " set FILEQUEUE_EMBEDDER=local with a model2vec model for semantic search"
        )
    if port:
        out(f"metrics:  curl localhost:{port}/metrics   # the worker's health and Prometheus metrics")
    out("Ctrl-C stops everything.")


@contextmanager
def _signals_stop_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) stop the dev stack exactly as Ctrl-C does."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    with _handling((signal.SIGTERM, signal.SIGHUP), interrupt):
        yield


@contextmanager
def _stop_deferred() -> Iterator[list[int]]:
    """Note a stop signal instead of acting on it at once, until the block ends.

    Interrupting PostgreSQL while it creates or starts its cluster leaves a data directory the next
    start cannot use, so the stack is brought up first and then stopped.
    """
    received: list[int] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signum)

    with _handling((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), note):
        yield received


@contextmanager
def _handling(signals: tuple[signal.Signals, ...], handler: Callable[[int, Any], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _run_cli(environment: dict[str, str], *arguments: str) -> str:
    """Run a `filequeue` command against the stack, the way a user in another shell would."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "handlers.cli", *arguments],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return (result.stdout + result.stderr).rstrip()


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * min(done, total) // max(total, 1)
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    sys.stderr.flush()


def _wait_for_empty_queue(stack: LocalStack, timeout: float = 30) -> None:
    sqs = aws_client("sqs", stack.environment)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _queue_depth(sqs, stack.resources.queue_url):
        time.sleep(0.2)


def _queue_depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _print_report(report: DemoReport, out: Callable[[str], None]) -> None:
    out("")
    out(f"processed {report.files} files in {report.seconds:.1f} s ({report.files / report.seconds:.2f} files/s)")
    out("  events:  " + ", ".join(f"{outcome} {count}" for outcome, count in report.outcomes.items()))
    out(f"  stored:  {report.stored}")
    out(f"  failed:  {len(report.failed)} (recorded on the document row, acknowledged, not retried)")
    for key, code, error in report.failed:
        out(f"    {key}: {code}: {error}")
    out(f"  chunks:  {report.chunks}")
    out("  edges:   " + ", ".join(f"{relation} {count}" for relation, count in report.edges.items()))
    out(f"  queue:   {report.queue_left} left, {report.dead_letters} in the DLQ")
