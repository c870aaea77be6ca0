from __future__ import annotations

import pytest

from handlers.budget import PARENT_RESERVE_MB
from handlers.errors import ConfigError
from handlers.settings import Settings, env_names


def test_defaults_are_valid_without_any_variable():
    settings = Settings.from_env({})
    assert (settings.embedder, settings.embedding_dimension, settings.chunk_size) == ("hashing", 256, 1000)
    assert settings.resolved_embedding_model == "hashing-v2"


def test_values_are_read_and_typed():
    settings = Settings.from_env(
        {
            "FILEQUEUE_DATABASE_URL": "postgresql://db/x",
            "FILEQUEUE_CHUNK_SIZE": "500",
            "FILEQUEUE_AUTO_MIGRATE": "false",
            "FILEQUEUE_SIMILAR_MIN_WEIGHT": "0.5",
            "FILEQUEUE_EMBEDDER": "bedrock",
            "FILEQUEUE_EMBEDDING_DIMENSION": "512",
        }
    )
    assert settings.chunk_size == 500
    assert settings.auto_migrate is False
    assert settings.similar_min_weight == 0.5
    assert settings.resolved_embedding_model == "amazon.titan-embed-text-v2:0"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"FILEQUEUE_CHUNK_SIZE": "big"}, "FILEQUEUE_CHUNK_SIZE must be a whole number, got 'big'"),
        ({"FILEQUEUE_AUTO_MIGRATE": "maybe"}, "FILEQUEUE_AUTO_MIGRATE must be true or false"),
        ({"FILEQUEUE_EMBEDDER": "word2vec"}, "FILEQUEUE_EMBEDDER must be one of"),
        ({"FILEQUEUE_EMBEDDER": "bedrock", "FILEQUEUE_EMBEDDING_DIMENSION": "300"}, "FILEQUEUE_EMBEDDING_DIMENSION"),
        ({"FILEQUEUE_EMBEDDER": "openai"}, "FILEQUEUE_OPENAI_BASE_URL"),
        ({"FILEQUEUE_CHUNK_SIZE": "100", "FILEQUEUE_CHUNK_OVERLAP": "60"}, "FILEQUEUE_CHUNK_OVERLAP"),
        ({"FILEQUEUE_WORKER_BATCH_SIZE": "11"}, "FILEQUEUE_WORKER_BATCH_SIZE"),
        ({"FILEQUEUE_DATABASE_URL": "postgresql://x", "FILEQUEUE_DATABASE_SECRET_ARN": "arn:x"}, "only one of"),
        ({"FILEQUEUE_OCR": "sometimes"}, "FILEQUEUE_OCR must be true or false"),
        ({"FILEQUEUE_OCR_MAX_PAGES": "0"}, "FILEQUEUE_OCR_MAX_PAGES must be positive"),
        ({"FILEQUEUE_OCR_MAX_PIXELS": "-1"}, "FILEQUEUE_OCR_MAX_PIXELS must be positive"),
    ],
)
def test_invalid_values_name_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(environ)


def test_ocr_is_on_by_default_and_off_gives_no_ocr_options():
    options = Settings.from_env({}).ocr_options
    assert options is not None
    assert (options.max_pages, options.max_pixels, options.tesseract) == (30, 50_000_000, "tesseract")
    configured = Settings.from_env(
        {"FILEQUEUE_OCR_MAX_PAGES": "3", "FILEQUEUE_OCR_MAX_PIXELS": "1000", "FILEQUEUE_OCR_TESSERACT": "/opt/t"}
    ).ocr_options
    assert configured is not None
    assert (configured.max_pages, configured.max_pixels, configured.tesseract) == (3, 1000, "/opt/t")
    assert Settings.from_env({"FILEQUEUE_OCR": "off"}).ocr_options is None
    assert Settings.from_env({"FILEQUEUE_OCR": "on"}).ocr is True


def test_a_bad_number_reads_as_english():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"FILEQUEUE_SIMILAR_MIN_WEIGHT": "high"})
    assert str(raised.value) == "FILEQUEUE_SIMILAR_MIN_WEIGHT must be a number, got 'high'"


def test_database_is_required_only_where_it_is_used():
    with pytest.raises(ConfigError, match="FILEQUEUE_DATABASE_URL"):
        Settings.from_env({}).require_database()
    with pytest.raises(ConfigError, match="FILEQUEUE_QUEUE_URL"):
        Settings.from_env({}).require_queue()


def test_blank_values_mean_the_default():
    assert Settings.from_env({"FILEQUEUE_CHUNK_SIZE": "  "}).chunk_size == 1000


def test_env_names_cover_every_field():
    assert "FILEQUEUE_DATABASE_SECRET_ARN" in env_names()
    assert all(name.startswith("FILEQUEUE_") for name in env_names())
    assert len(env_names()) == len(set(env_names()))


def test_lambda_memory_is_read_from_the_runtime_and_the_extraction_cap_leaves_the_parent_room():
    settings = Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"})
    assert settings.memory_limit_mb == 2048
    assert settings.extract_memory_mb == 2048 - PARENT_RESERVE_MB


def test_the_pod_memory_limit_is_shared_by_the_worker_processes():
    settings = Settings.from_env({"FILEQUEUE_MEMORY_LIMIT_MB": "4096", "FILEQUEUE_WORKER_PROCESSES": "2"})
    assert settings.extract_memory_mb == 2048 - PARENT_RESERVE_MB


def test_an_explicit_extraction_cap_above_the_derived_one_names_the_variables():
    with pytest.raises(ConfigError, match=r"FILEQUEUE_EXTRACT_MEMORY_MB \(2048\) must be at most 1664") as caught:
        Settings.from_env({"FILEQUEUE_MEMORY_LIMIT_MB": "2048", "FILEQUEUE_EXTRACT_MEMORY_MB": "2048"})
    assert "FILEQUEUE_MEMORY_LIMIT_MB" in str(caught.value)
    assert (
        Settings.from_env(
            {"FILEQUEUE_MEMORY_LIMIT_MB": "2048", "FILEQUEUE_EXTRACT_MEMORY_MB": "1000"}
        ).extract_memory_mb
        == 1000
    )


def test_a_memory_limit_too_small_for_the_processes_names_the_variable():
    with pytest.raises(ConfigError, match="FILEQUEUE_MEMORY_LIMIT_MB"):
        Settings.from_env({"FILEQUEUE_MEMORY_LIMIT_MB": "1024", "FILEQUEUE_WORKER_PROCESSES": "4"})


def test_the_default_time_limits_fit_the_default_shutdown_grace():
    settings = Settings.from_env({})
    settings.check_time_budget(settings.worker_shutdown_grace_seconds, "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS")
    assert settings.worker_shutdown_grace_seconds >= settings.extract_timeout_seconds + settings.write_margin_seconds


def test_inconsistent_time_limits_name_every_variable_involved():
    settings = Settings.from_env({"FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": "25"})
    with pytest.raises(ConfigError) as caught:
        settings.check_time_budget(settings.worker_shutdown_grace_seconds, "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS")
    message = str(caught.value)
    for name in (
        "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS",
        "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS",
        "FILEQUEUE_WRITE_MARGIN_SECONDS",
    ):
        assert name in message
    assert "exceed FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS (25 s)" in message


def test_an_extraction_limit_no_worker_lease_can_hold_names_the_variables():
    from handlers.worker.startup import check_limits

    # SQS keeps a message invisible for 12 h at most, however often the heartbeat renews it
    settings = Settings.from_env(
        {"FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": "43200", "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": "50000"}
    )
    with pytest.raises(ConfigError) as caught:
        check_limits(settings, 1)
    message = str(caught.value)
    assert "SQS's 12 h visibility limit less FILEQUEUE_WORKER_START_WAIT_SECONDS" in message
    assert "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS" in message
    assert "no file could ever use its whole extraction limit" in message


def test_a_shutdown_grace_that_exactly_fits_extraction_and_write_is_refused():
    # The download comes first: a grace of exactly the limit plus the write margin never fits a whole limit
    settings = Settings.from_env(
        {
            "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": "135",
            "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": "120",
            "FILEQUEUE_WRITE_MARGIN_SECONDS": "15",
        }
    )
    with pytest.raises(ConfigError, match="leave nothing of it to download the file"):
        settings.check_time_budget(settings.worker_shutdown_grace_seconds, "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS")
