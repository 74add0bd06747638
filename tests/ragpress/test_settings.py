"""Settings come from keyword arguments, the environment and a TOML file, with secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragpress.base.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAGPRESS_MODELS_DIR", raising=False)
    monkeypatch.delenv("RAGPRESS_KV_PRECOMPUTE", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.kv_precompute == "eager"  # the default query pipeline reads cached states
    assert settings.qdrant_url is None and settings.broker_url is None
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'ragpress.db'}"
    assert settings.models_path == tmp_path / "models"


def test_conventional_service_variables_are_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/1")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    settings = Settings(home=tmp_path)
    assert settings.broker_url == "redis://localhost:6379/1" and settings.distributed_queue
    assert settings.qdrant_url == "http://qdrant:6333"


def test_a_toml_config_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "ragpress.toml"
    config.write_text('port = 9100\nworker_threads = 3\n')
    monkeypatch.setenv("RAGPRESS_CONFIG", str(config))
    settings = Settings(home=tmp_path)
    assert settings.port == 9100 and settings.worker_threads == 3


def test_unknown_settings_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "ragpress.toml"
    config.write_text('prot = 9100\n')
    monkeypatch.setenv("RAGPRESS_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        Settings(home=tmp_path)


def test_secrets_are_masked_when_settings_are_shown(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, broker_url="redis://user:hunter2@host:6379/0", qdrant_api_key="k3y")
    shown = str(settings.public_dict())
    assert "hunter2" not in shown and "k3y" not in shown and "redis://user:***@host:6379/0" in shown
