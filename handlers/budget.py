"""Time and memory budgets shared by the runtimes and the CDK app.

Pure arithmetic on configured limits, so that the Lambda start-up, the worker start-up and `cdk synth`
reject the same inconsistent combinations with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        if self.extract_timeout_seconds + self.write_margin_seconds > self.total_seconds:
            found.append(
                f"the extraction limit ({self.extract_timeout_seconds:g} s) plus the write margin "
                f"({self.write_margin_seconds:g} s) exceed {total_name} ({self.total_seconds:g} s): "
                "a file that needs the whole extraction limit could never be stored"
            )
        return found

    def work_seconds(self, remaining_seconds: float) -> float:
        """Time a record that starts now may spend on extraction and embedding: never past the write margin."""
        return max(0.0, min(self.extract_timeout_seconds, remaining_seconds - self.write_margin_seconds))


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
