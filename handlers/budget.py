"""Time and memory budgets shared by the runtimes and the CDK app.

Pure arithmetic on configured limits, so that the Lambda start-up, the worker start-up and `cdk synth`
reject the same inconsistent combinations with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

# SQS never keeps a received message invisible for longer than this from its receive, however often the
# worker's heartbeat extends it: the most time the worker can ever hold one record.
SQS_MAX_VISIBILITY_SECONDS = 12 * 60 * 60
# What a handler process holds while its extraction child runs: the interpreter, boto3, psycopg, the
# powertools logger, one downloaded batch's bookkeeping and the embedder's working set.
PARENT_RESERVE_MB = 384
# Below this an extraction child cannot even import pypdf and parse a small file.
MIN_EXTRACT_MEMORY_MB = 128


@dataclass(frozen=True, slots=True)
class TimeBudget:
    """The limits that decide whether a record can finish before its runtime stops it.

    `total_seconds` is the Lambda function timeout, or the worker's shutdown grace: the time a record
    may still need once it has started. `deadline_margin_seconds` is the least time left for a record
    to start; `write_margin_seconds` is kept back from extraction and embedding for the database write.
    """

    total_seconds: float
    deadline_margin_seconds: float
    extract_timeout_seconds: float
    write_margin_seconds: float

    def problems(self, total_name: str) -> list[str]:
        """Every way these limits contradict each other, each a sentence naming the limits involved."""
        found: list[str] = []
        if self.write_margin_seconds <= 0:
            found.append("the write margin must be positive")
        if self.deadline_margin_seconds <= self.write_margin_seconds:
            found.append(
                f"the deadline margin ({self.deadline_margin_seconds:g} s) must exceed the write margin "
                f"({self.write_margin_seconds:g} s), or a record could start with no time to extract"
            )
        if self.total_seconds <= self.deadline_margin_seconds:
            found.append(
                f"{total_name} ({self.total_seconds:g} s) must exceed the deadline margin "
                f"({self.deadline_margin_seconds:g} s), or no record would ever start"
            )
        if self.extract_timeout_seconds + self.write_margin_seconds >= self.total_seconds:
            # Equal is refused too: the download comes before the extraction, so no file would get its whole limit.
            found.append(
                f"the extraction limit ({self.extract_timeout_seconds:g} s) plus the write margin "
                f"({self.write_margin_seconds:g} s) exceed {total_name} ({self.total_seconds:g} s) or leave nothing "
                "of it to download the file: no file could ever use its whole extraction limit"
            )
        return found

    def record(self, remaining_seconds: float, now: float) -> RecordBudget:
        """The budget of a record that starts at `now` (monotonic), its runtime holding it `remaining_seconds`."""
        return RecordBudget(
            work_deadline=now + max(0.0, remaining_seconds - self.write_margin_seconds),
            extract_limit_seconds=self.extract_timeout_seconds,
        )


@dataclass(frozen=True, slots=True)
class ExtractionTime:
    """How long one extraction may run, and whose fault it is if the file needs longer."""

    seconds: float
    whole_limit: bool
    """True: the file has its whole extraction limit, so needing longer is the file's own verdict
    (`extract_timeout`, recorded). False: the runtime's time cut it shorter, so needing longer says nothing
    about the file (`deadline`, retried with fresh time)."""


@dataclass(frozen=True, slots=True)
class RecordBudget:
    """One record's time, fixed when it starts from how long its runtime can still hold the message.

    Extraction, embedding and reading the links end by `work_deadline`; the write margin follows it. The
    file's own extraction limit counts from the moment its extraction starts (after the download), so a
    runtime that can hold the record long enough always gives the file its whole limit.
    """

    work_deadline: float
    """Monotonic time by which the work before the write must end."""
    extract_limit_seconds: float

    def extraction(self, now: float) -> ExtractionTime:
        """The time an extraction starting at `now` gets: the file's whole limit when it fits, else what is left."""
        left = self.work_deadline - now
        if left >= self.extract_limit_seconds:
            return ExtractionTime(self.extract_limit_seconds, whole_limit=True)
        return ExtractionTime(max(0.0, left), whole_limit=False)


def extract_memory_mb(total_memory_mb: int, processes: int = 1) -> int:
    """Address-space cap for one extraction child, leaving each handler process its own reserve.

    `total_memory_mb` is the Lambda function's memory or the container's memory limit; `processes` is how
    many handler processes share it (each may run one extraction child at a time).
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    share_mb = total_memory_mb // processes
    cap_mb = share_mb - PARENT_RESERVE_MB
    if cap_mb < MIN_EXTRACT_MEMORY_MB:
        raise ValueError(
            f"{total_memory_mb} MB for {processes} process(es) leaves {cap_mb} MB per extraction after the "
            f"{PARENT_RESERVE_MB} MB each handler process keeps; at least {MIN_EXTRACT_MEMORY_MB} MB is needed"
        )
    return cap_mb
