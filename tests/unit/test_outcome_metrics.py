"""Outcome metrics: EMF lines for Lambda, Prometheus counters for the worker, from the same handler calls."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from handlers import outcome_metrics
from handlers.model import OutcomeStatus
from handlers.outcome_metrics import EmfOutcomes, record_outcome
from handlers.worker.metrics import WorkerMetrics


@pytest.fixture(autouse=True)
def no_recorder_left_behind():
    yield
    outcome_metrics.install(None)


def _emf(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if '"_aws"' in line]


def _record_a_batch() -> None:
    record_outcome(OutcomeStatus.STORED, chunks=12, size=4000)
    record_outcome(OutcomeStatus.STORED, chunks=3, size=1000)
    record_outcome(OutcomeStatus.FAILED, "encrypted_pdf", size=500)
    record_outcome(OutcomeStatus.FAILED, "invalid_json")
    record_outcome(OutcomeStatus.RETRY, "db_unavailable")
    record_outcome(OutcomeStatus.SKIPPED, size=50)


def test_emf_counts_outcomes_by_kind_and_error_code_and_the_throughput(capsys):
    outcomes = EmfOutcomes()
    outcome_metrics.install(outcomes)
    _record_a_batch()
    outcomes.flush()
    lines = _emf(capsys.readouterr().out)
    records = {(line["outcome"], line["error_code"]): line["Records"] for line in lines if "Records" in line}
    assert records == {
        ("stored", "none"): [2.0],
        ("failed", "encrypted_pdf"): [1.0],
        ("failed", "invalid_json"): [1.0],
        ("retry", "db_unavailable"): [1.0],
        ("skipped", "none"): [1.0],
    }
    [throughput] = [line for line in lines if "DocumentsStored" in line]
    assert (throughput["DocumentsStored"], throughput["ChunksWritten"], throughput["BytesProcessed"]) == (
        [2.0],
        [15.0],
        [5500.0],
    )
    directive = throughput["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
    assert directive["Namespace"] == "FileQueue"
    assert {"Name": "BytesProcessed", "Unit": "Bytes"} in directive["Metrics"]
    outcomes.flush()
    assert _emf(capsys.readouterr().out) == [], "a flush starts the next invocation from zero"


def test_worker_metrics_expose_the_same_outcomes_on_prometheus():
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    _record_a_batch()
    sample = registry.get_sample_value
    assert sample("filequeue_records_total", {"outcome": "stored", "error_code": "none"}) == 2
    assert sample("filequeue_records_total", {"outcome": "failed", "error_code": "encrypted_pdf"}) == 1
    assert sample("filequeue_records_total", {"outcome": "retry", "error_code": "db_unavailable"}) == 1
    assert sample("filequeue_documents_stored_total") == 2
    assert sample("filequeue_chunks_written_total") == 15
    assert sample("filequeue_bytes_processed_total") == 5500


def test_without_a_recorder_nothing_is_recorded(capsys):
    record_outcome(OutcomeStatus.STORED, chunks=1, size=1)
    assert capsys.readouterr().out == ""


def test_the_lambda_entry_writes_emf_at_the_end_of_each_invocation(capsys):
    from handlers import lambda_entry
    from handlers.ops.s3_events import message_body, s3_test_event, sqs_event
    from handlers.runtime_context import DeadlineContext

    outcome_metrics.install(lambda_entry._outcomes)
    lambda_entry._outcomes.flush()  # outcomes other tests left since the module was first imported
    capsys.readouterr()
    event = sqs_event([message_body(s3_test_event("bucket"))])
    assert lambda_entry.lambda_handler(event, DeadlineContext.lasting(300)) == {"batchItemFailures": []}  # type: ignore[arg-type]
    [line] = [line for line in _emf(capsys.readouterr().out) if "Records" in line]
    assert (line["outcome"], line["error_code"], line["Records"]) == ("ignored", "none", [1.0])


def test_a_tally_counts_the_permanent_failures_a_batch_response_does_not_show():
    tally = outcome_metrics.OutcomeTally()
    outcome_metrics.install(tally)
    try:
        record_outcome(OutcomeStatus.STORED, chunks=2, size=10)
        record_outcome(OutcomeStatus.FAILED, "corrupt_file", size=5)
        record_outcome(OutcomeStatus.FAILED, "content_rejected")
        record_outcome(OutcomeStatus.RETRY, "db_unavailable")
    finally:
        outcome_metrics.install(None)
    assert tally.failed == 2
    assert tally.counts[OutcomeStatus.STORED] == 1
    assert tally.counts[OutcomeStatus.RETRY] == 1
