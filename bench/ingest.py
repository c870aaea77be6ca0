"""Ingest cost against the floor of this stack and against LangChain, side by side in one run.

A deterministic, offline workload (N Markdown files of ~20 KB English-like prose with headings and
lists, N ten-page PDFs with a real text layer written by fpdf2; fixed seed; chunks of 1000
characters with 200 of overlap, dimension 384, the hashing embedder) is ingested by each contender
on a fresh embedded stack (pgserver + moto), in rounds of rotating order; each figure is the median
of the rounds.

- floor: files read from disk, pypdf in one process, a plain fixed-window split (1000 characters
  every 800: none of the project's stages, so the floor is independent of them), the same
  embedder, one binary COPY, the HNSW index built after the load: the limit of this stack on one core.
- seed: the seed's loop: receive one message, fetch, extract, chunk, embed, INSERT row by row,
  commit per file, delete the message; the HNSW index present.
- langchain: PyPDFLoader / TextLoader, RecursiveCharacterTextSplitter at the same size and
  overlap, langchain-postgres `PGVector` with its HNSW index present, one `add_documents` per file,
  the same embedder wrapped as LangChain `Embeddings` (`bench/ingest_langchain.py`). It runs in an
  environment of its own, `.filequeue/bench-venvs/langchain`, created from the pins in
  `bench/requirements-langchain.txt`: LangChain is never a dependency of the project.
- direct: the handler called directly in one process (ten records per batch).
- worker1 / worker2: `filequeue worker --processes 1|2` on real S3 notifications in moto's queue.
Ours run twice: `before` with FILEQUEUE_VECTOR_INDEX=live (every chunk pays the live HNSW
insertion, as before segments), `after` segmented (chunks land in the unindexed growing area).
The headline of ours is what a user waits for: the load, then the product's default compaction
(`compact` with the default `CompactOptions`: seal and index the growing area once it holds
`seal_rows` rows, count the BM25 statistics, run the `similar` linking pass); the compaction's
share is also reported apart. Start-up (imports, connections, migrations) is inside every
contender's time.

Measured per contender: wall seconds, files/s, chunks/s, peak RSS (the largest process of the
contender's tree, from each process's high-water mark), PostgreSQL server CPU seconds (the postmaster and all its
backends, from /proc) and per chunk, the machine's busy CPU seconds (all cores, all processes,
from /proc/stat: divided by the wall time, the cores a contender keeps busy) and those of the
harness process, where moto's server answers S3 and SQS, and the ratios to the floor; worker2's
files/s over LangChain's and the seed's. Also: the cold import of the Lambda entry against boto3 +
powertools' batch module alone, the peak RSS of extracting the largest corpus PDF, (with
--profile) a py-spy profile of the direct handler by stage and (with --profile-db) the server time
of `worker2 after`'s statements, load and compaction, from PostgreSQL's statement log.

    python bench/ingest.py [--n 100] [--rounds 3] [--profile] [--profile-db]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from handlers.develop.demo import LocalStack

SEED = 20261130
DIMENSION = 384
REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_ROOT = REPO_ROOT / ".filequeue" / "bench-corpus"
RESULTS = Path(__file__).parent / "results" / "ingest.json"
LANGCHAIN_VENV = REPO_ROOT / ".filequeue" / "bench-venvs" / "langchain"
LANGCHAIN_REQUIREMENTS = Path(__file__).parent / "requirements-langchain.txt"
LANGCHAIN_CHILD = Path(__file__).parent / "ingest_langchain.py"
CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200
PDF_PAGES = 10
MARKDOWN_BYTES = 20_000
PDF_PAGE_CHARS = 2_900
LARGEST_FIXTURE_PDF = REPO_ROOT / "tests" / "fixtures" / "pdf"

# Common English words, most frequent first; sampled with Zipf weights they read like prose to a
# tokenizer (function words dominate, content words repeat across documents).
WORDS = """
the of and to a in is that for it as was with be by on not he this are or his from at which but have an they
you were her she there been one all we their has would when if so no will more what up out can about who them
into some could time than other only new two then these may first any like now my do over such our man me even
most made after also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get here between both life
being under never day same another know while last might us great old year off come since against go came right
used take three states himself few house use during without again place around however home small found thought
went say part once general high upon school every does got united left number course war until always away
something fact though water less public put think almost hand enough far took head yet government system better
set told nothing night end why called didn't eyes find going look asked later knew point next program city business
give group toward young days let room president side social given present several order national possible rather
second face per among form important often things looked early white case john become large big need four within
felt along children saw best church ever least power development light thought family interest want members
mind country service area others done turned although open problem god whole sense several data queue storage
index vector segment document search chunk embedding database worker process memory network server client
request response latency throughput batch message event bucket object upload cluster replica partition table
""".split()  # noqa: SIM905 - a word list reads better as text


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - a reproducible corpus, not secrets


class Prose:
    """Sentences, paragraphs, headings and lists of words drawn with Zipf weights."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.weights = [1.0 / rank for rank in range(1, len(WORDS) + 1)]

    def words(self, count: int) -> list[str]:
        return self.rng.choices(WORDS, self.weights, k=count)

    def sentence(self) -> str:
        words = self.words(self.rng.randint(8, 22))
        return " ".join(words).capitalize() + "."

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(3, 7)))

    def heading(self) -> str:
        return " ".join(self.words(self.rng.randint(2, 5))).title()

    def markdown(self, title: str) -> str:
        parts = [f"# {title}", ""]
        while sum(len(part) + 1 for part in parts) < MARKDOWN_BYTES:
            parts += [f"## {self.heading()}", ""]
            for _ in range(self.rng.randint(2, 4)):
                parts += [self.paragraph(), ""]
            if self.rng.random() < 0.6:
                bullet = "-" if self.rng.random() < 0.5 else "1."
                parts += [f"{bullet} {self.sentence()}" for _ in range(self.rng.randint(3, 6))] + [""]
        return "\n".join(parts)

    def page(self) -> str:
        paragraphs: list[str] = []
        while sum(len(paragraph) + 2 for paragraph in paragraphs) < PDF_PAGE_CHARS:
            paragraphs.append(self.paragraph())
        return "\n\n".join(paragraphs)


def build_corpus(n: int, seed: int = SEED) -> Path:
    """N Markdown files and N PDFs under CORPUS_ROOT (written once, reused by later runs)."""
    folder = CORPUS_ROOT / f"n{n}-seed{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder
    from datetime import UTC, datetime

    from fpdf import FPDF

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "md").mkdir(parents=True)
    (folder / "pdf").mkdir()
    prose = Prose(_rng(seed))
    for number in range(n):
        title = prose.heading()
        (folder / "md" / f"doc-{number:04d}.md").write_text(prose.markdown(title), encoding="utf-8")
        pdf = FPDF(format="A4")
        pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))
        pdf.set_auto_page_break(auto=False)
        pdf.set_title(prose.heading())
        for _ in range(PDF_PAGES):
            pdf.add_page()
            pdf.set_font("Helvetica", size=9)
            pdf.multi_cell(w=0, h=4.2, text=prose.page())
        pdf.output(str(folder / "pdf" / f"doc-{number:04d}.pdf"))
    done.touch()
    return folder


def corpus_files(folder: Path, n: int) -> list[Path]:
    """The first `n` Markdown files and the first `n` PDFs, interleaved."""
    markdown = sorted((folder / "md").glob("*.md"))[:n]
    pdfs = sorted((folder / "pdf").glob("*.pdf"))[:n]
    return [path for pair in zip(markdown, pdfs, strict=True) for path in pair]


def object_key(path: Path) -> str:
    return f"uploads/{path.parent.name}/{path.name}"


# --- measuring -------------------------------------------------------------------------------


def server_cpu_seconds(pgdata: Path) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, its reaped children and its live ones."""
    import psutil

    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return float(total)


def settled_server_cpu_seconds(pgdata: Path, timeout: float = 3.0) -> float:
    """`server_cpu_seconds` once the client backends of a contender that exited are gone (reaped, so counted).

    A backend whose client left is counted neither as a live child nor as a reaped one until the
    postmaster has waited for it.
    """
    import psutil

    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not any(_is_client_backend(child.cmdline()) for child in postmaster.children()):
                break
        except psutil.Error:
            pass
        time.sleep(0.02)
    return server_cpu_seconds(pgdata)


def _is_client_backend(cmdline: list[str]) -> bool:
    """A client backend: its title is `postgres: USER DATABASE HOST STATE`, HOST `[local]` or `ADDRESS(PORT)`."""
    title = " ".join(cmdline)
    return title.startswith("postgres: ") and ("[local]" in title or re.search(r"\(\d+\)", title) is not None)


def machine_busy_seconds() -> float:
    """CPU seconds every core of this machine spent busy since boot (all processes, from /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def harness_cpu_seconds() -> float:
    """CPU seconds of this process: the harness and moto's server, which runs in its threads."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """The machine's busy CPU seconds and the harness's (moto's) over a block, or up to `stop()`."""

    def __enter__(self) -> CpuMeter:
        self._machine, self._harness = machine_busy_seconds(), harness_cpu_seconds()
        self.machine = self.harness = 0.0
        self._stopped = False
        return self

    def stop(self) -> None:
        if not self._stopped:
            self.machine = machine_busy_seconds() - self._machine
            self.harness = harness_cpu_seconds() - self._harness
            self._stopped = True

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class RssSampler:
    """Peak RSS of the largest process in a process tree, read from each process's high-water mark.

    VmHWM is the kernel's own peak of a process's resident memory, so a sparse sample misses no
    peak of a process it sees; processes are looked up every `interval` seconds. Sampling must stay
    cheap: it shares this process (and its interpreter lock) with moto's server.
    """

    def __init__(self, root_pid: int, interval: float = 0.5) -> None:
        self.root_pid = root_pid
        self.peak_bytes = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while True:
            try:
                root = psutil.Process(self.root_pid)
                for process in [root, *root.children(recursive=True)]:
                    self.peak_bytes = max(self.peak_bytes, _peak_rss_bytes(process.pid))
            except psutil.Error:
                pass
            if self._stop.wait(self._interval):
                return


def _peak_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Run:
    contender: str
    seconds: float
    """The headline: for ours, the load and then the default compaction (what a user waits for)."""
    files: int
    chunks: int
    db_cpu_seconds: float
    peak_rss_mb: float
    compaction_seconds: float | None = None
    compaction_db_cpu_seconds: float | None = None
    compaction_sealed_rows: int | None = None
    compaction_steps: dict[str, float] | None = None
    """Seconds of each step of the compaction (seal, merge, index, statistics, link)."""
    first_document_seconds: float | None = None
    """Workers: from the command's start to the first stored document (start-up, polled every 0.2 s)."""
    machine_cpu_seconds: float = 0.0
    """Busy CPU seconds of the whole machine during the run: contender, PostgreSQL, moto, harness."""
    moto_cpu_seconds: float = 0.0
    """CPU seconds of the harness process, where moto's server answers S3 and SQS."""


@contextmanager
def fresh_stack() -> Iterator[tuple[LocalStack, Path]]:
    from handlers.develop.demo import start_local_stack

    root = Path(tempfile.mkdtemp(prefix="filequeue-bench-ingest-"))
    stack = start_local_stack(root, visibility_timeout=300)
    try:
        yield stack, root / "pgdata"
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def _environment(stack: LocalStack, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **stack.environment,
        "FILEQUEUE_EMBEDDING_DIMENSION": str(DIMENSION),
        "FILEQUEUE_CHUNK_SIZE": str(CHUNK_SIZE),
        "FILEQUEUE_CHUNK_OVERLAP": str(CHUNK_OVERLAP),
        "FILEQUEUE_HEALTH_PORT": "0",
        # The default compaction runs once after the load (inside the timed region), not interleaved with it.
        "FILEQUEUE_COMPACTION_INTERVAL_SECONDS": "0",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **extra,
    }


def _child(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, *arguments], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(child: subprocess.Popen[bytes], what: str) -> None:
    _, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{what} failed with {child.returncode}: {stderr.decode(errors='replace')[-2000:]}")


def _count_chunks(database_url: str, table: str) -> int:
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _upload(stack: LocalStack, files: list[Path]) -> list[dict[str, Any]]:
    from handlers.develop.devstack import aws_client
    from handlers.ops.s3_events import s3_notification

    s3 = aws_client("s3", stack.environment)
    notifications = []
    for path in files:
        body = path.read_bytes()
        response = s3.put_object(Bucket=stack.resources.bucket, Key=object_key(path), Body=body)
        notifications.append(
            s3_notification(
                stack.resources.bucket,
                object_key(path),
                size=len(body),
                etag=response["ETag"].strip('"'),
                version_id=response.get("VersionId"),
            )
        )
    return notifications


def _timed(
    child: subprocess.Popen[bytes], pgdata: Path, cpu_before: float, started: float, what: str
) -> tuple[float, float, float]:
    with RssSampler(child.pid) as sampler:
        _finish(child, what)
    seconds = time.monotonic() - started
    return seconds, settled_server_cpu_seconds(pgdata) - cpu_before, sampler.peak_bytes / 2**20


def _with_cpu(run: Run, meter: CpuMeter) -> Run:
    run.machine_cpu_seconds, run.moto_cpu_seconds = meter.machine, meter.harness
    return run


def run_floor(files: list[Path]) -> Run:
    with fresh_stack() as (stack, pgdata), tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump([str(path) for path in files], listing)
        listing.flush()
        cpu = server_cpu_seconds(pgdata)
        with CpuMeter() as meter:
            started = time.monotonic()
            child = _child(["--floor-child", listing.name], _environment(stack))
            seconds, db_cpu, rss = _timed(child, pgdata, cpu, started, "floor")
        chunks = _count_chunks(stack.database_url, "floor_chunks")
        return _with_cpu(Run("floor", seconds, len(files), chunks, db_cpu, rss), meter)


def run_seed(files: list[Path]) -> Run:
    with fresh_stack() as (stack, pgdata):
        _upload(stack, files)
        cpu = server_cpu_seconds(pgdata)
        with CpuMeter() as meter:
            started = time.monotonic()
            child = _child(["--seed-child", str(len(files))], _environment(stack))
            seconds, db_cpu, rss = _timed(child, pgdata, cpu, started, "seed")
        chunks = _count_chunks(stack.database_url, "seed_chunks")
        return _with_cpu(Run("seed", seconds, len(files), chunks, db_cpu, rss), meter)


def langchain_python() -> Path:
    """The LangChain environment's interpreter; the environment is created (or refreshed) from the pins first."""
    python = LANGCHAIN_VENV / "bin" / "python"
    stamp = LANGCHAIN_VENV / "requirements.txt"
    pins = LANGCHAIN_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == pins:
        return python
    shutil.rmtree(LANGCHAIN_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(LANGCHAIN_VENV)], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(LANGCHAIN_REQUIREMENTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"cannot install the LangChain contender's packages: {installed.stderr[-2000:]}")
    stamp.write_text(pins)
    return python


def run_langchain(files: list[Path]) -> Run:
    python = langchain_python()
    with fresh_stack() as (stack, pgdata), tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump([str(path) for path in files], listing)
        listing.flush()
        arguments = [listing.name, stack.database_url, str(CHUNK_SIZE), str(CHUNK_OVERLAP), str(DIMENSION)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        cpu = server_cpu_seconds(pgdata)
        with CpuMeter() as meter:
            started = time.monotonic()
            child = subprocess.Popen(
                [str(python), str(LANGCHAIN_CHILD), *arguments],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            seconds, db_cpu, rss = _timed(child, pgdata, cpu, started, "langchain")
        chunks = _count_chunks(stack.database_url, "langchain_pg_embedding")
        return _with_cpu(Run("langchain", seconds, len(files), chunks, db_cpu, rss), meter)


def run_direct(files: list[Path], mode: str, name: str) -> Run:
    with fresh_stack() as (stack, pgdata), tempfile.NamedTemporaryFile("w", suffix=".json") as batch:
        json.dump([json.dumps(notification) for notification in _upload(stack, files)], batch)
        batch.flush()
        cpu = server_cpu_seconds(pgdata)
        with CpuMeter() as meter:
            started = time.monotonic()
            child = _child(["--direct-child", batch.name], _environment(stack, FILEQUEUE_VECTOR_INDEX=mode))
            seconds, db_cpu, rss = _timed(child, pgdata, cpu, started, name)
        run = Run(name, seconds, len(files), _count_chunks(stack.database_url, "chunks"), db_cpu, rss)
        return _with_compaction(_with_cpu(run, meter), stack, pgdata, sealing=mode != "live")


def run_worker(files: list[Path], mode: str, processes: int, name: str) -> Run:
    with fresh_stack() as (stack, pgdata):
        return _worker_on(stack, pgdata, files, mode=mode, processes=processes, name=name)


def _worker_on(
    stack: LocalStack, pgdata: Path, files: list[Path], *, mode: str, processes: int, name: str, compaction: bool = True
) -> Run:
    from handlers.develop.demo import running_worker, wait_until_processed

    _upload(stack, files)
    env = _environment(stack, FILEQUEUE_VECTOR_INDEX=mode, FILEQUEUE_WORKER_WAIT_TIME_SECONDS="2")
    cpu = server_cpu_seconds(pgdata)
    started = time.monotonic()
    first_document: list[float] = []

    def note_first(done: int, _total: int) -> None:
        if done and not first_document:
            first_document.append(time.monotonic() - started)

    with CpuMeter() as meter, running_worker(env, processes) as worker, RssSampler(worker.pid) as sampler:
        wait_until_processed(stack.database_url, len(files), timeout=3600, worker=worker, on_progress=note_first)
        seconds = time.monotonic() - started
        db_cpu = server_cpu_seconds(pgdata) - cpu
        meter.stop()  # the worker's shutdown is not part of the run
    run = Run(
        name, seconds, len(files), _count_chunks(stack.database_url, "chunks"), db_cpu, sampler.peak_bytes / 2**20
    )
    run.first_document_seconds = first_document[0]
    _with_cpu(run, meter)
    return _with_compaction(run, stack, pgdata, sealing=mode != "live") if compaction else run


def _with_compaction(run: Run, stack: LocalStack, pgdata: Path, *, sealing: bool = True) -> Run:
    """Run the product's default compaction after the load; its time and database CPU join the headline.

    With the default options the growing area is sealed and indexed once it holds `seal_rows`
    rows, the sealed segments' BM25 statistics are counted and the `similar` linking pass runs;
    the worker's shutdown before it is left out (nobody waits for it). Without `sealing` (the
    `live` index, whose rows are indexed as they are written) there is nothing to seal.
    """
    import psycopg

    from handlers.ops.compaction import CompactOptions, compact

    options = CompactOptions()
    cpu = server_cpu_seconds(pgdata)
    with CpuMeter() as meter:
        started = time.monotonic()
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            report = compact(conn, options)
            seconds = time.monotonic() - started
            # Read while its backend lives: a backend that exited but is not yet reaped counts nowhere.
            db_cpu = server_cpu_seconds(pgdata) - cpu
    if report.skipped:
        raise RuntimeError(f"compaction skipped: {report.skipped}")
    if sealing and run.chunks >= options.seal_rows and report.sealed_rows != run.chunks:
        raise RuntimeError(f"compaction sealed {report.sealed_rows} of {run.chunks} chunks")
    run.compaction_seconds = seconds
    run.compaction_db_cpu_seconds = db_cpu
    run.compaction_sealed_rows = report.sealed_rows
    run.compaction_steps = dict(report.seconds)
    run.seconds += seconds
    run.db_cpu_seconds += run.compaction_db_cpu_seconds
    run.machine_cpu_seconds += meter.machine
    return run


# --- the contenders' own processes -------------------------------------------------------------


def _settings() -> Any:
    from handlers.settings import get_settings

    return get_settings()


def fixed_windows(text: str, size: int, overlap: int) -> list[str]:
    """The floor's chunker: windows of `size` characters starting every `size - overlap`, nothing else."""
    step = size - overlap
    return [text[start : start + size] for start in range(0, max(len(text) - overlap, 1), step) if text[start:].strip()]


def floor_child(listing: str) -> None:
    """Extraction, chunking and loading with none of the project's stages: only the embedder is shared."""
    import psycopg
    from pgvector import Vector
    from pgvector.psycopg import register_vector
    from pypdf import PdfReader

    from handlers.adapters.embedders import build_embedder

    settings = _settings()
    embedder = build_embedder(settings)
    rows = []
    for name in json.loads(Path(listing).read_text()):
        path = Path(name)
        if path.suffix == ".pdf":
            text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
        else:
            text = path.read_text(encoding="utf-8")
        windows = fixed_windows(text, CHUNK_SIZE, CHUNK_OVERLAP)
        vectors = embedder.embed(windows)
        rows += [
            (object_key(path), ordinal, window, vector)
            for ordinal, (window, vector) in enumerate(zip(windows, vectors, strict=True))
        ]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(
            f"CREATE TABLE floor_chunks (id bigserial PRIMARY KEY, key text, ordinal int, text text,"
            f" embedding vector({DIMENSION}))"
        )
        with conn.cursor().copy(
            "COPY floor_chunks (key, ordinal, text, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "int4", "text", "vector"])
            for key, ordinal, window, vector in rows:
                copy.write_row((key, ordinal, window, Vector(vector)))
        conn.execute("CREATE INDEX ON floor_chunks USING hnsw (embedding vector_cosine_ops)")


def seed_child(expected: str) -> None:
    """The seed's consumer loop with the obvious body."""
    import boto3
    import psycopg
    from pgvector import Vector
    from pgvector.psycopg import register_vector

    from handlers.adapters.embedders import build_embedder
    from handlers.model import ChunkingOptions, ExtractLimits
    from handlers.stages.chunking import chunk_document
    from handlers.stages.events import parse_notifications
    from handlers.stages.extract import extract_text

    settings = _settings()
    embedder = build_embedder(settings)
    options = ChunkingOptions(size=settings.chunk_size, overlap=settings.chunk_overlap)
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    done = 0
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(
            "CREATE TABLE seed_chunks (id bigserial PRIMARY KEY, key text, ordinal int, text text,"
            f" embedding vector({DIMENSION}))"
        )
        conn.execute("CREATE INDEX ON seed_chunks USING hnsw (embedding vector_cosine_ops)")
        conn.commit()
        while done < int(expected):
            messages = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get(
                "Messages", []
            )
            for message in messages:
                for ref in parse_notifications(message["Body"]).refs:
                    body = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
                    extracted = extract_text(body, key=ref.key, declared_content_type=None, limits=ExtractLimits())
                    chunks = chunk_document(extracted, options)
                    vectors = embedder.embed([chunk.text for chunk in chunks])
                    conn.execute("DELETE FROM seed_chunks WHERE key = %s", (ref.key,))
                    for chunk, vector in zip(chunks, vectors, strict=True):
                        conn.execute(
                            "INSERT INTO seed_chunks (key, ordinal, text, embedding) VALUES (%s, %s, %s, %s)",
                            (ref.key, chunk.ordinal, chunk.text, Vector(vector)),
                        )
                    conn.commit()
                    done += 1
                sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=message["ReceiptHandle"])


def direct_child(batch_file: str) -> None:
    from handlers.batch import handle_batch
    from handlers.ops.s3_events import sqs_event
    from handlers.runtime_context import DeadlineContext

    bodies: list[str] = json.loads(Path(batch_file).read_text())
    for start in range(0, len(bodies), 10):
        response = handle_batch(sqs_event(bodies[start : start + 10]), DeadlineContext.lasting(900))
        if response["batchItemFailures"]:
            raise RuntimeError(f"records failed: {response['batchItemFailures']}")


# --- side measurements ----------------------------------------------------------------------


def cold_import_ms(repeats: int = 7) -> dict[str, float]:
    """Median wall time of a fresh interpreter importing the Lambda entry, and boto3 + powertools' batch alone."""
    probes = {
        "python_only": "pass",
        "boto3_and_powertools_batch": "import boto3, aws_lambda_powertools.utilities.batch",
        "lambda_entry": "import handlers.lambda_entry",
    }
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(repeats):
        for name, code in probes.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


def largest_pdf_extraction() -> dict[str, Any]:
    """Peak RSS of a worker-like process and of its extraction child on the largest fixture PDF.

    The probe stays a minimal process (it does not import this module), so its own peak is the
    worker-like process's. Both are VmHWM (the high-water mark of a process's memory since exec, or
    since fork for the
    child, which is still alive, serving the next file): ru_maxrss would also count the memory of
    the process it was forked from, before exec.
    """
    largest = max(LARGEST_FIXTURE_PDF.glob("*.pdf"), key=lambda path: path.stat().st_size)
    probe = (
        "import json\n"
        "from pathlib import Path\n"
        "from handlers.adapters import sandbox\n"
        "from handlers.model import ExtractLimits\n"
        f"sandbox.extract_file({str(largest)!r}, key='x.pdf', declared_content_type=None, limits=ExtractLimits(),"
        " timeout_seconds=300, memory_mb=2048)\n"
        "def peak_kb(pid):\n"
        "    status = dict(line.split(':', 1) for line in Path(f'/proc/{pid}/status').read_text().splitlines())\n"
        "    return int(status['VmHWM'].split()[0])\n"
        "print(json.dumps([peak_kb('self'), peak_kb(sandbox._extraction_child(2048).pid)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO_ROOT, capture_output=True, text=True)
    parent_kb, child_kb = json.loads(result.stdout.strip().splitlines()[-1])
    size_mb = largest.stat().st_size / 2**20
    return {
        "file": largest.name,
        "size_mb": round(size_mb, 2),
        "parent_peak_rss_mb": round(parent_kb / 1024, 1),
        "child_peak_rss_mb": round(child_kb / 1024, 1),
        "bound_mb": round(3 * size_mb + 200, 1),
    }


_CHILD_PROBE = """
import json, statistics, sys, time
from handlers.adapters import sandbox
from handlers.model import ExtractLimits
from handlers.settings import Settings
ocr = Settings.from_env({}).ocr_options  # what a default deploy passes; text-layer pages never use it
if sys.argv[1] == "fork_per_file_pypdf_preloaded":
    import pypdf, pypdf.filters
calls = sandbox.MAX_CALLS_PER_CHILD if sys.argv[1] == "long_lived_child" else 1
child = sandbox.BoundedChild(sandbox._extract_path, memory_mb=2048, max_calls=calls)
times = []
for path in sys.argv[2:]:
    started = time.perf_counter()
    child.call(path, "x.pdf", None, ExtractLimits(), ocr, timeout_seconds=60)
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps(statistics.median(times[1:])))
"""


def extraction_per_file(pdfs: list[Path], repeats: int = 3) -> dict[str, float]:
    """Median ms per ten-page PDF through the bounded extraction, after the first file of a process.

    `fork_per_file` forks a fresh child for every file, which imports pypdf again;
    `fork_per_file_pypdf_preloaded` forks one for every file from a parent that imported pypdf
    (the children inherit it); `long_lived_child` is what runs: one child, file after file.
    """
    times: dict[str, list[float]] = {"fork_per_file": [], "fork_per_file_pypdf_preloaded": [], "long_lived_child": []}
    for _ in range(repeats):
        for mode, values in times.items():
            result = subprocess.run(
                [sys.executable, "-c", _CHILD_PROBE, mode, *map(str, pdfs)],
                check=True,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
            )
            values.append(float(result.stdout.strip().splitlines()[-1]))
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


# Each sample goes to the stage of its deepest frame that names one (an import inside a stage is
# an import). Marks are matched against py-spy's "function (file:line)" frames.
STAGES = (
    ("import", ("_find_and_load (",)),
    ("extract (child, wait)", ("extract_file (",)),
    ("chunk", ("chunk_document (",)),
    ("embed", ("handlers/adapters/embedders/",)),
    ("mentions", ("find_mentions (",)),
    ("store: link (graph edges)", ("link_document (",)),
    ("store: write chunks", ("store_document (",)),
    ("fetch from S3", ("S3ObjectStore.fetch (",)),
    ("stale and duplicate checks", ("should_process (", "mark_unchanged (")),
    ("start-up: adapters, migrations", ("build_deps (",)),
    ("batch processing and logging", ("process_partial_response (",)),
)


def profile_direct(files: list[Path]) -> dict[str, Any]:
    """py-spy over the direct handler (segmented): wall time of its main thread by stage, waits included.

    Waits are included (--idle) because the handler's time is mostly spent waiting: on the
    extraction child, on PostgreSQL, on S3. The main thread's stacks are those through `direct_child`.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with fresh_stack() as (stack, _), tempfile.TemporaryDirectory() as scratch:
        batch, raw = Path(scratch) / "batch.json", Path(scratch) / "profile.txt"
        batch.write_text(json.dumps([json.dumps(notification) for notification in _upload(stack, files)]))
        command = [py_spy, "record", "--idle", "--format", "raw", "--rate", "100", "--output", str(raw), "--"]
        subprocess.run(
            [*command, sys.executable, __file__, "--direct-child", str(batch)],
            env=_environment(stack, FILEQUEUE_VECTOR_INDEX="segmented"),
            check=True,
            capture_output=True,
        )
        lines = raw.read_text().splitlines()
    samples: Counter[str] = Counter()
    for line in lines:
        stack_text, _, count = line.rpartition(" ")
        if "direct_child (" not in stack_text:
            continue
        samples[_stage(stack_text.split(";"))] += int(count)
    total = sum(samples.values())
    return {stage: round(100 * count / total, 1) for stage, count in samples.most_common()} | {"samples": total}


def _stage(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in STAGES:
            if any(mark in frame for mark in marks):
                return name
    return "other"


# --- the run ---------------------------------------------------------------------------------


PROFILE_KEY = "profile_direct_after_percent_of_wall_time"
PROFILE_DB_KEY = "profile_db_worker2_after"


def contenders(files: list[Path], small: list[Path]) -> dict[str, Callable[[], Run]]:
    return {
        "floor": lambda: run_floor(files),
        "seed": lambda: run_seed(files),
        "langchain": lambda: run_langchain(files),
        "direct before": lambda: run_direct(files, "live", "direct before"),
        "direct after": lambda: run_direct(files, "segmented", "direct after"),
        "worker1 before": lambda: run_worker(files, "live", 1, "worker1 before"),
        "worker1 after": lambda: run_worker(files, "segmented", 1, "worker1 after"),
        "worker2 before": lambda: run_worker(files, "live", 2, "worker2 before"),
        "worker2 after": lambda: run_worker(files, "segmented", 2, "worker2 after"),
        "direct after N/5": lambda: run_direct(small, "segmented", "direct after N/5"),
    }


def median_run(runs: list[Run]) -> dict[str, Any]:
    def median(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return round(statistics.median(present), 3) if present else None

    steps = sorted({step for run in runs for step in run.compaction_steps or {}})
    seconds = median([run.seconds for run in runs]) or 0.0
    db_cpu = median([run.db_cpu_seconds for run in runs]) or 0.0
    files, chunks = runs[0].files, runs[0].chunks
    return {
        "files": files,
        "chunks": chunks,
        "seconds": seconds,
        "files_per_second": round(files / seconds, 2),
        "chunks_per_second": round(chunks / seconds, 1),
        "db_cpu_seconds": db_cpu,
        "db_cpu_ms_per_chunk": round(1000 * db_cpu / max(chunks, 1), 3),
        "peak_rss_mb": median([run.peak_rss_mb for run in runs]),
        "compaction_seconds": median([run.compaction_seconds for run in runs]),
        "compaction_db_cpu_seconds": median([run.compaction_db_cpu_seconds for run in runs]),
        "compaction_sealed_rows": runs[0].compaction_sealed_rows,
        "compaction_step_seconds": {
            step: median([(run.compaction_steps or {}).get(step) for run in runs]) for step in steps
        }
        or None,
        "first_document_seconds": median([run.first_document_seconds for run in runs]),
        "machine_cpu_seconds": median([run.machine_cpu_seconds for run in runs]),
        "moto_cpu_seconds": median([run.moto_cpu_seconds for run in runs]),
        "rounds": [round(run.seconds, 2) for run in runs],
    }


def with_ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each contender's time and DB CPU per chunk against the floor's; worker2's files/s against LangChain's."""
    comparisons: dict[str, Any] = {}
    if floor := results.get("floor"):
        for row in results.values():
            row["x_floor_seconds"] = round(row["seconds"] / floor["seconds"], 2)
            row["x_floor_db_cpu_ms_per_chunk"] = round(
                row["db_cpu_ms_per_chunk"] / max(floor["db_cpu_ms_per_chunk"], 1e-9), 2
            )
    for ours in ("worker2 after", "worker1 after", "direct after"):
        for other in ("langchain", "seed"):
            if ours in results and other in results:
                ratio = results[ours]["files_per_second"] / results[other]["files_per_second"]
                comparisons[f"{ours} files/s over {other} files/s"] = round(ratio, 2)
    return comparisons


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'contender':<18}{'files':>6}{'chunks':>7}{'s':>8}{'files/s':>8}{'chunks/s':>9}{'RSS MB':>8}"
        f"{'DB CPU s':>9}{'DB ms/chunk':>12}{'x floor':>8}{'compact s':>10}{'compact DB s':>13}"
        f"{'1st doc s':>10}{'cores busy':>11}{'moto CPU s':>11}"
    )
    print(header)
    for name, row in results.items():
        seconds = row["seconds"]
        compaction = row["compaction_seconds"]
        compaction_cpu = row["compaction_db_cpu_seconds"]
        first = row["first_document_seconds"]
        ratio = row.get("x_floor_seconds")
        print(
            f"{name:<18}{row['files']:>6}{row['chunks']:>7}{seconds:>8.2f}{row['files_per_second']:>8.2f}"
            f"{row['chunks_per_second']:>9.1f}{row['peak_rss_mb']:>8.0f}{row['db_cpu_seconds']:>9.2f}"
            f"{row['db_cpu_ms_per_chunk']:>12.3f}{'' if ratio is None else f'{ratio:.2f}':>8}"
            f"{'' if compaction is None else f'{compaction:.2f}':>10}"
            f"{'' if compaction_cpu is None else f'{compaction_cpu:.2f}':>13}"
            f"{'' if first is None else f'{first:.2f}':>10}"
            f"{row['machine_cpu_seconds'] / seconds:>11.2f}{row['moto_cpu_seconds']:>11.2f}"
        )


# --- the database's share, statement by statement -----------------------------------------------

# A logged statement: "<time> <zone> [pid] LOG:  duration: 1.234 ms  execute <unnamed>: SELECT ...".
_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ([A-Z]+):  (.*)$")
# The harness's own statements (its progress poll every 0.2 s, its count of the chunks), left out of the profile.
HARNESS_STATEMENTS = frozenset({"SELECT count(*) FROM documents", 'SELECT count(*) FROM "chunks"'})
_DURATION = re.compile(r"^duration: ([0-9.]+) ms  (statement|parse|bind|execute)(?: [^:]+)?: (.*)$", re.DOTALL)
_COMMENT = re.compile(r"--[^\n]*")
_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
STATEMENT_CHARS = 160


@dataclass
class StatementTimes:
    """Server milliseconds and calls per normalised statement (literals as ?, blanks folded)."""

    milliseconds: defaultdict[str, float]
    calls: Counter[str]

    def total(self) -> float:
        return float(sum(self.milliseconds.values()))

    def table(self, documents: int, limit: int) -> list[dict[str, Any]]:
        whole = self.total() or 1.0
        return [
            {
                "statement": statement,
                "calls": self.calls[statement],
                "total_ms": round(total, 1),
                "percent": round(100 * total / whole, 1),
                "ms_per_document": round(total / max(documents, 1), 3),
            }
            for statement, total in sorted(self.milliseconds.items(), key=lambda item: -item[1])[:limit]
        ]


def logged_statements(log: str) -> StatementTimes:
    """The statements of a PostgreSQL log written with `log_min_duration_statement = 0`.

    Every phase of the extended protocol (parse, bind, execute) counts toward its statement, and a
    trigger's time toward the statement that fired it; a call is an execute or a simple-protocol
    statement. The harness's own statements are left out.
    """
    times = StatementTimes(defaultdict(float), Counter())
    records: list[list[str]] = []
    for line in log.splitlines():
        if match := _LOG_RECORD.match(line):
            records.append(list(match.groups()))
        elif records:
            records[-1][1] += "\n" + line
    for level, message in records:
        if level != "LOG" or not (match := _DURATION.match(message)):
            continue
        milliseconds, phase, text = match.groups()
        statement = " ".join(_LITERAL.sub("?", _COMMENT.sub("", text)).split())[:STATEMENT_CHARS]
        if statement in HARNESS_STATEMENTS:
            continue
        times.milliseconds[statement] += float(milliseconds)
        if phase in {"statement", "execute"}:
            times.calls[statement] += 1
    return times


def profile_db(files: list[Path], limit: int = 25) -> dict[str, Any]:
    """Server time by statement for `worker2 after` and its default compaction, from PostgreSQL's own log.

    pgserver's build has no pg_stat_statements (nor any contrib module), so PostgreSQL logs the
    duration of every statement (`log_min_duration_statement = 0`) and this sums the log by
    normalised statement; `track_functions = 'pl'` adds the PL/pgSQL functions (the full-text
    trigger) from `pg_stat_user_functions`. Durations are the server's elapsed time for each
    statement (CPU, waits for locks and I/O included; a COPY's also includes the client sending its
    rows). The migrations are applied before the log is read, so it holds the documents' statements.
    Logging every statement slows the server a little, so these figures come from a run of their
    own, not from the timed rounds.
    """
    import psycopg

    with fresh_stack() as (stack, pgdata):
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
            conn.execute("ALTER SYSTEM SET track_functions = 'pl'")
            conn.execute("SELECT pg_reload_conf()")
        # The schema first, so that the log holds what every document costs, not the start-up's migrations.
        subprocess.run(
            [sys.executable, "-m", "handlers.cli", "migrate"],
            env=_environment(stack),
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        log = pgdata / "log"
        start = log.stat().st_size
        run = _worker_on(stack, pgdata, files, mode="segmented", processes=2, name="worker2 after", compaction=False)
        middle = log.stat().st_size
        _with_compaction(run, stack, pgdata)
        with log.open("rb") as handle:
            handle.seek(start)
            load = handle.read(middle - start).decode(errors="replace")
            compaction = handle.read().decode(errors="replace")
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            functions = conn.execute(
                "SELECT schemaname || '.' || funcname, calls, total_time, self_time FROM pg_stat_user_functions"
                " ORDER BY total_time DESC"
            ).fetchall()
    documents = run.files
    load_times, compaction_times = logged_statements(load), logged_statements(compaction)
    return {
        "documents": documents,
        "chunks": run.chunks,
        "load_seconds": round(run.seconds - (run.compaction_seconds or 0.0), 3),
        "compaction_seconds": run.compaction_seconds,
        "db_cpu_seconds": round(run.db_cpu_seconds, 3),
        "logged_ms": {"load": round(load_times.total(), 1), "compaction": round(compaction_times.total(), 1)},
        "load_statements": load_times.table(documents, limit),
        "compaction_statements": compaction_times.table(documents, limit),
        "functions": [
            {
                "function": name,
                "calls": calls,
                "total_ms": round(total, 1),
                "self_ms": round(own, 1),
                "ms_per_document": round(total / max(documents, 1), 3),
            }
            for name, calls, total, own in functions
        ],
    }


def print_profile(profile: dict[str, Any]) -> None:
    for part in ("load_statements", "compaction_statements"):
        print(f"{part} (server ms; {profile['documents']} documents, {profile['chunks']} chunks)")
        for row in profile[part][:15]:
            print(
                f"{row['total_ms']:>10.1f}{row['percent']:>6.1f}%{row['calls']:>7}"
                f"{row['ms_per_document']:>9.3f}  {row['statement'][:110]}"
            )
    for row in profile["functions"]:
        print(f"function {row['function']}: {row['calls']} calls, {row['total_ms']} ms ({row['self_ms']} self)")


def update_part(args: argparse.Namespace) -> None:
    """Measure one part again (side measurements, profile or database profile) into the stored results."""
    stored = json.loads(args.output.read_text())
    folder = build_corpus(args.n)
    if args.side_only:
        stored["cold_import_ms"], stored["largest_pdf_extraction"] = cold_import_ms(), largest_pdf_extraction()
        stored["extraction_ms_per_pdf"] = extraction_per_file(sorted((folder / "pdf").glob("*.pdf"))[:20])
        side = ("cold_import_ms", "largest_pdf_extraction", "extraction_ms_per_pdf")
        print(json.dumps({key: stored[key] for key in side}, indent=2))
    if args.profile_only:
        stored[PROFILE_KEY] = profile_direct(corpus_files(folder, args.n))
        print(json.dumps(stored[PROFILE_KEY], indent=2))
    if args.profile_db_only:
        stored[PROFILE_DB_KEY] = profile_db(corpus_files(folder, args.n))
        print_profile(stored[PROFILE_DB_KEY])
    args.output.write_text(json.dumps(stored, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="Markdown files and PDFs of each kind (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", action="append", choices=list(contenders([], [])), help="run only these contenders (repeatable)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the direct handler with py-spy")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS.name})")
    parser.add_argument(
        "--side-only", action="store_true", help="only the cold import and the largest PDF; update the results file"
    )
    parser.add_argument("--profile-only", action="store_true", help="only the profile; update the results file")
    parser.add_argument(
        "--profile-db",
        action="store_true",
        help="also list the server time of worker2 after's statements (a run of its own with statement logging)",
    )
    parser.add_argument(
        "--profile-db-only", action="store_true", help="only the database profile; update the results file"
    )
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--seed-child", help=argparse.SUPPRESS)
    parser.add_argument("--direct-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child)
        return
    if args.seed_child:
        seed_child(args.seed_child)
        return
    if args.direct_child:
        direct_child(args.direct_child)
        return

    if args.side_only or args.profile_only or args.profile_db_only:
        update_part(args)
        return
    folder = build_corpus(args.n)
    files = corpus_files(folder, args.n)
    small = corpus_files(folder, max(1, args.n // 5))
    chosen = {name: run for name, run in contenders(files, small).items() if not args.only or name in args.only}
    names = list(chosen)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            run = chosen[name]()
            runs[name].append(run)
            print(f"round {round_number + 1} {name:<18} {run.seconds:8.2f} s  {run.chunks} chunks", flush=True)
    results = {name: median_run(runs[name]) for name in names}
    comparisons = with_ratios(results)
    report: dict[str, Any] = {
        "n": args.n,
        "rounds": args.rounds,
        "dimension": DIMENSION,
        "chunk_size": CHUNK_SIZE,
        "chunk_overlap": CHUNK_OVERLAP,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        "comparisons": comparisons,
        "cold_import_ms": cold_import_ms(),
        "largest_pdf_extraction": largest_pdf_extraction(),
        "extraction_ms_per_pdf": extraction_per_file(sorted((folder / "pdf").glob("*.pdf"))[:20]),
    }
    if args.profile:
        report[PROFILE_KEY] = profile_direct(files)
    if args.profile_db:
        report[PROFILE_DB_KEY] = profile_db(files)
        print_profile(report[PROFILE_DB_KEY])
    print_table(results)
    print(json.dumps(comparisons, indent=2))
    print(json.dumps({key: report[key] for key in report if key not in {"results", PROFILE_DB_KEY}}, indent=2))
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
