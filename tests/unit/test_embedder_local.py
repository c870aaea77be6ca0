from __future__ import annotations

import math

import pytest

from handlers.adapters.embedders import build_embedder
from handlers.adapters.embedders.local import LocalEmbedder
from handlers.errors import ConfigError
from handlers.settings import Settings
from tests.model2vec_model import DIMENSION, build_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("model") / "tiny-model2vec")


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_texts_on_one_subject_without_a_shared_word_are_close(model_dir):
    embedder = LocalEmbedder(str(model_dir))
    bread, loaf, tides = embedder.embed(["feed the sourdough starter", "bake a loaf of bread", "the moon moves tides"])
    assert embedder.dimension == DIMENSION
    assert embedder.model == "model2vec:tiny-model2vec"
    assert all(math.isclose(_cosine(vector, vector), 1.0) for vector in (bread, loaf, tides))
    assert _cosine(bread, loaf) > 0.9
    assert _cosine(bread, tides) < 0.3


def test_text_of_unknown_words_still_gets_a_unit_vector(model_dir):
    [vector] = LocalEmbedder(str(model_dir)).embed(["zzz qqq"])
    assert math.isclose(_cosine(vector, vector), 1.0)


def test_settings_build_it_with_the_directory_name_as_model_and_check_the_dimension(model_dir):
    env = {"FILEQUEUE_EMBEDDER": "local", "FILEQUEUE_EMBEDDING_MODEL_PATH": str(model_dir)}
    settings = Settings.from_env({**env, "FILEQUEUE_EMBEDDING_DIMENSION": str(DIMENSION)})
    embedder = build_embedder(settings)
    assert (embedder.model, embedder.dimension) == ("model2vec:tiny-model2vec", DIMENSION)
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_DIMENSION is 256; set it to 16"):
        build_embedder(Settings.from_env(env))


def test_missing_model_directory_or_path_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL_PATH is required"):
        Settings.from_env({"FILEQUEUE_EMBEDDER": "local"})
    with pytest.raises(ConfigError, match="is not a model2vec model directory"):
        LocalEmbedder(str(tmp_path / "nowhere"))
