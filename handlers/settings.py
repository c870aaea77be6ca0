"""The one settings object: read once from the environment, validated, frozen.

The same variable names are used in Lambda (set by the CDK app), in the pod (set by the
Kubernetes manifests) and locally. `Settings.from_env` is a pure function of a mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from typing import TYPE_CHECKING

from handlers.budget import TimeBudget, extract_memory_mb
from handlers.errors import ConfigError
from handlers.model import OcrOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

PREFIX = "FILEQUEUE_"
LAMBDA_MEMORY_VARIABLE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# The extraction cap when the runtime's memory is unknown (a developer machine, `filequeue demo`).
UNKNOWN_MEMORY_EXTRACT_MB = 2048
TIME_LIMIT_VARIABLES = (
    "FILEQUEUE_DEADLINE_MARGIN_SECONDS",
    "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS",
    "FILEQUEUE_WRITE_MARGIN_SECONDS",
)
EMBEDDER_KINDS = ("hashing", "bedrock", "openai", "local")
BEDROCK_DIMENSIONS = (256, 512, 1024)
VECTOR_INDEX_MODES = ("segmented", "live")
DEFAULT_MODELS = {
    "hashing": "hashing-v2",
    "bedrock": "amazon.titan-embed-text-v2:0",
    "openai": "text-embedding-3-small",
    "local": "",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the pipeline. Field `foo_bar` is read from `FILEQUEUE_FOO_BAR`."""

    database_url: str | None = None
    database_secret_arn: str | None = None
    auto_migrate: bool = True
    db_pool_max_size: int = 4
    db_connect_timeout_seconds: float = 10.0

    max_object_bytes: int = 100 * 1024 * 1024
    max_pdf_pages: int = 2000
    max_text_chars: int = 20_000_000
    extract_timeout_seconds: float = 120.0
    extract_memory_mb: int = 0
    """0 (unset): derived from `memory_limit_mb` when the object is built (see `derive_extract_memory`)."""
    memory_limit_mb: int = 0
    """The runtime's whole memory: the function's in Lambda (read from AWS_LAMBDA_FUNCTION_MEMORY_SIZE when
    unset), the container's limit in a pod (the manifests pass it through the downward API); 0: unknown."""
    max_decompressed_bytes: int = 256 * 1024 * 1024
    ocr: bool = True
    """`on`: PDF pages without a text layer and PNG/JPEG/TIFF images are read by OCR (docs/ocr.md)."""
    ocr_max_pages: int = 30
    ocr_max_pixels: int = 50_000_000
    ocr_tesseract: str = "tesseract"
    """The Tesseract binary: a name looked up on PATH, or a path."""

    chunk_size: int = 1000
    chunk_overlap: int = 150

    embedder: str = "hashing"
    embedding_model: str = ""
    embedding_dimension: int = 256
    embedding_batch_size: int = 32
    embedding_concurrency: int = 4
    embedding_model_path: str | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    http_timeout_seconds: float = 30.0

    similar_top_k: int = 5
    similar_relative_floor: float = 0.5
    similar_min_weight: float = 0.1

    vector_index: str = "segmented"
    compaction_interval_seconds: float = 60.0
    compaction_seal_rows: int = 2000

    deadline_margin_seconds: float = 30.0
    write_margin_seconds: float = 15.0
    """Kept back from extraction and embedding so that a record's database write always has time."""

    queue_url: str | None = None
    worker_processes: int = 0
    worker_visibility_timeout_seconds: int = 0
    worker_wait_time_seconds: int = 20
    worker_batch_size: int = 10
    worker_shutdown_grace_seconds: float = 150.0
    worker_start_wait_seconds: float = 10.0
    """A received message that has not started after this long while the process is busy is released."""
    worker_database_wait_seconds: float = 120.0
    """How long a starting worker waits, retrying, for a database that refuses or times out (a restart or a
    failover) before it exits as misconfigured; a wrong URL, password or database name exits at once."""
    outage_wait_seconds: float = 60.0
    """How long a record that came back (its second receive or later) keeps retrying a transient failure
    in place, a database known to be down included, before it gives the message back (within its budget)."""
    health_port: int = 8080
    console_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from `environ`; raises ConfigError naming the variable at fault."""
        values: dict[str, object] = {}
        for spec in fields(cls):
            name = PREFIX + spec.name.upper()
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[spec.name] = _parse(name, raw.strip(), spec.default)
        if "memory_limit_mb" not in values and (lambda_memory := environ.get(LAMBDA_MEMORY_VARIABLE, "").strip()):
            values["memory_limit_mb"] = _parse(LAMBDA_MEMORY_VARIABLE, lambda_memory, 0)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        if self.extract_memory_mb == 0:
            # Frozen: the derived value is set once, here, so every reader sees the cap in force.
            object.__setattr__(self, "extract_memory_mb", self.derive_extract_memory(max(1, self.worker_processes)))

    @property
    def resolved_embedding_model(self) -> str:
        if not self.embedding_model and self.embedder == "local" and self.embedding_model_path:
            return "model2vec:" + self.embedding_model_path.rstrip("/").rpartition("/")[2]
        return self.embedding_model or DEFAULT_MODELS[self.embedder]

    def validate(self) -> None:
        """Cross-field checks; each error names the variable a user must change."""
        if self.database_url and self.database_secret_arn:
            raise ConfigError("set only one of FILEQUEUE_DATABASE_URL and FILEQUEUE_DATABASE_SECRET_ARN")
        _require(self.embedder in EMBEDDER_KINDS, "FILEQUEUE_EMBEDDER", f"must be one of {', '.join(EMBEDDER_KINDS)}")
        _require(1 <= self.embedding_dimension <= 16000, "FILEQUEUE_EMBEDDING_DIMENSION", "must be in 1..16000")
        if self.embedder == "bedrock":
            _require(
                self.embedding_dimension in BEDROCK_DIMENSIONS,
                "FILEQUEUE_EMBEDDING_DIMENSION",
                "must be 256, 512 or 1024 for Titan Text Embeddings V2",
            )
        if self.embedder == "openai":
            _require(
                bool(self.openai_base_url), "FILEQUEUE_OPENAI_BASE_URL", "is required with FILEQUEUE_EMBEDDER=openai"
            )
        if self.embedder == "local":
            _require(
                bool(self.embedding_model_path),
                "FILEQUEUE_EMBEDDING_MODEL_PATH",
                "is required with FILEQUEUE_EMBEDDER=local (a model2vec model directory)",
            )
        _require(self.chunk_size >= 50, "FILEQUEUE_CHUNK_SIZE", "must be at least 50 characters")
        _require(
            0 <= self.chunk_overlap < self.chunk_size // 2,
            "FILEQUEUE_CHUNK_OVERLAP",
            "must be >= 0 and less than half of FILEQUEUE_CHUNK_SIZE",
        )
        for name in (
            "max_object_bytes",
            "max_pdf_pages",
            "max_text_chars",
            "embedding_batch_size",
            "db_pool_max_size",
            "ocr_max_pages",
            "ocr_max_pixels",
        ):
            _require(getattr(self, name) > 0, PREFIX + name.upper(), "must be positive")
        _require(self.extract_timeout_seconds > 0, "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS", "must be positive")
        _require(self.embedding_concurrency >= 1, "FILEQUEUE_EMBEDDING_CONCURRENCY", "must be at least 1")
        _require(0.0 <= self.similar_relative_floor <= 1.0, "FILEQUEUE_SIMILAR_RELATIVE_FLOOR", "must be in 0..1")
        _require(0.0 <= self.similar_min_weight <= 1.0, "FILEQUEUE_SIMILAR_MIN_WEIGHT", "must be in 0..1")
        _require(self.similar_top_k >= 0, "FILEQUEUE_SIMILAR_TOP_K", "must be >= 0")
        _require(self.vector_index in VECTOR_INDEX_MODES, "FILEQUEUE_VECTOR_INDEX", "must be segmented or live")
        _require(
            self.compaction_interval_seconds >= 0,
            "FILEQUEUE_COMPACTION_INTERVAL_SECONDS",
            "must be >= 0 (0 turns the worker's compaction off)",
        )
        _require(self.compaction_seal_rows >= 1, "FILEQUEUE_COMPACTION_SEAL_ROWS", "must be at least 1")
        _require(self.deadline_margin_seconds >= 0, "FILEQUEUE_DEADLINE_MARGIN_SECONDS", "must be >= 0")
        _require(self.write_margin_seconds > 0, "FILEQUEUE_WRITE_MARGIN_SECONDS", "must be positive")
        _require(self.memory_limit_mb >= 0, "FILEQUEUE_MEMORY_LIMIT_MB", "must be >= 0 (0 means unknown)")
        _require(self.extract_memory_mb >= 0, "FILEQUEUE_EXTRACT_MEMORY_MB", "must be >= 0 (0 means derived)")
        _require(self.max_decompressed_bytes > 0, "FILEQUEUE_MAX_DECOMPRESSED_BYTES", "must be positive")
        _require(self.worker_start_wait_seconds > 0, "FILEQUEUE_WORKER_START_WAIT_SECONDS", "must be positive")
        _require(self.worker_database_wait_seconds >= 0, "FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS", "must be >= 0")
        _require(self.outage_wait_seconds >= 0, "FILEQUEUE_OUTAGE_WAIT_SECONDS", "must be >= 0")
        self.derive_extract_memory(max(1, self.worker_processes))
        _require(0 <= self.worker_wait_time_seconds <= 20, "FILEQUEUE_WORKER_WAIT_TIME_SECONDS", "must be in 0..20")
        _require(1 <= self.worker_batch_size <= 10, "FILEQUEUE_WORKER_BATCH_SIZE", "must be in 1..10")
        _require(self.worker_processes >= 0, "FILEQUEUE_WORKER_PROCESSES", "must be >= 0 (0 means one per CPU)")
        _require(0 <= self.health_port <= 65535, "FILEQUEUE_HEALTH_PORT", "must be a TCP port (0 disables)")

    def derive_extract_memory(self, processes: int) -> int:
        """The extraction child's memory cap when `processes` handler processes share `memory_limit_mb`.

        An explicit FILEQUEUE_EXTRACT_MEMORY_MB is kept if it fits; above the derived cap it is an error,
        since a memory bomb could then take the whole runtime down instead of being recorded.
        """
        if not self.memory_limit_mb:
            return self.extract_memory_mb or UNKNOWN_MEMORY_EXTRACT_MB
        try:
            derived = extract_memory_mb(self.memory_limit_mb, processes)
        except ValueError as error:
            raise ConfigError(
                f"FILEQUEUE_MEMORY_LIMIT_MB (with FILEQUEUE_WORKER_PROCESSES={processes}) is too small: {error}"
            ) from None
        if self.extract_memory_mb > derived:
            raise ConfigError(
                f"FILEQUEUE_EXTRACT_MEMORY_MB ({self.extract_memory_mb}) must be at most {derived}: "
                f"FILEQUEUE_MEMORY_LIMIT_MB ({self.memory_limit_mb}) shared by {processes} process(es), "
                "each keeping its own reserve"
            )
        return self.extract_memory_mb or derived

    @property
    def ocr_options(self) -> OcrOptions | None:
        """The OCR bounds and engine when FILEQUEUE_OCR is on; None when off."""
        if not self.ocr:
            return None
        return OcrOptions(max_pages=self.ocr_max_pages, max_pixels=self.ocr_max_pixels, tesseract=self.ocr_tesseract)

    def time_budget(self, total_seconds: float) -> TimeBudget:
        return TimeBudget(
            total_seconds=total_seconds,
            deadline_margin_seconds=self.deadline_margin_seconds,
            extract_timeout_seconds=self.extract_timeout_seconds,
            write_margin_seconds=self.write_margin_seconds,
        )

    def check_time_budget(self, total_seconds: float, total_name: str) -> None:
        """Raise ConfigError if a record could not finish within `total_seconds` (named `total_name`)."""
        problems = self.time_budget(total_seconds).problems(total_name)
        if problems:
            names = ", ".join((total_name, *TIME_LIMIT_VARIABLES))
            raise ConfigError(f"inconsistent time limits ({names}): " + "; ".join(problems))

    def require_database(self) -> None:
        if not (self.database_url or self.database_secret_arn):
            raise ConfigError("FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN) is required")

    def require_queue(self) -> str:
        if not self.queue_url:
            raise ConfigError("FILEQUEUE_QUEUE_URL is required for the worker")
        return self.queue_url


def env_names() -> list[str]:
    """Every environment variable the settings object reads (used by the infrastructure tests)."""
    return [PREFIX + spec.name.upper() for spec in fields(Settings)]


@cache
def get_settings() -> Settings:
    """The process-wide settings; the only place that reads `os.environ`."""
    return Settings.from_env(os.environ)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {message}")


def _parse(name: str, raw: str, default: object) -> object:
    parsers: dict[type, Callable[[str], object]] = {bool: _parse_bool, int: int, float: float}
    parser = parsers.get(type(default), str)
    try:
        return parser(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {_KIND_NAMES.get(type(default), 'text')}, got {raw!r}") from None


_KIND_NAMES: dict[type, str] = {bool: "true or false", int: "a whole number", float: "a number"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
