"""The model registry: resolving names never downloads, and problems name the command that fixes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragpress.base import models
from ragpress.base.settings import Settings

pytestmark = pytest.mark.unit


def test_an_unfetched_bundled_model_names_the_fetch_command(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, models_dir=tmp_path / "models")
    with pytest.raises(models.ModelError, match="ragpress models fetch all-MiniLM-L6-v2"):
        models.resolve("all-MiniLM-L6-v2", settings)


def test_an_unknown_name_is_refused_with_the_alternatives(tmp_path: Path) -> None:
    with pytest.raises(models.ModelError, match="neither a bundled model"):
        models.resolve("no-such-model", Settings(home=tmp_path))


def test_a_local_directory_is_used_as_is(tmp_path: Path) -> None:
    assert models.resolve(str(tmp_path), Settings(home=tmp_path / "home")) == str(tmp_path)


def test_aliases_find_the_bundled_model() -> None:
    assert models.lookup("sentence-transformers/all-MiniLM-L6-v2").name == "all-MiniLM-L6-v2"


def test_verify_detects_changed_weights(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, models_dir=tmp_path / "models")
    directory = settings.models_path / "all-MiniLM-L6-v2"
    directory.mkdir(parents=True)
    weights = directory / "model.safetensors"
    weights.write_bytes(b"original weights")
    (directory / models.MANIFEST).write_text(json.dumps(
        {"weights_file": weights.name, "weights_sha256": models.sha256_file(weights)}))
    assert models.verify("all-MiniLM-L6-v2", settings) == directory
    weights.write_bytes(b"tampered weights")
    with pytest.raises(models.ModelError, match=r"corrupt.*ragpress models fetch --force"):
        models.verify("all-MiniLM-L6-v2", settings)


@pytest.mark.integration
def test_the_fetched_defaults_verify(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir)
    for name in models.default_models():
        assert models.verify(name, settings).is_dir()
