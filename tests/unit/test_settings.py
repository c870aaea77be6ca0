from __future__ import annotations

import pytest

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
            "FILEQUEUE_SIMILAR_THRESHOLD": "0.5",
            "FILEQUEUE_EMBEDDER": "bedrock",
            "FILEQUEUE_EMBEDDING_DIMENSION": "512",
        }
    )
    assert settings.chunk_size == 500
    assert settings.auto_migrate is False
    assert settings.similar_threshold == 0.5
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
    ],
)
def test_invalid_values_name_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(environ)


def test_a_bad_number_reads_as_english():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"FILEQUEUE_SIMILAR_THRESHOLD": "high"})
    assert str(raised.value) == "FILEQUEUE_SIMILAR_THRESHOLD must be a number, got 'high'"


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
