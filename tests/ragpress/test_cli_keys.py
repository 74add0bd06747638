"""``ragpress keys``: keys are created (shown once), listed without the key and revoked, in the server's database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragpress import cli_keys
from ragpress.base.settings import Settings
from ragpress.cli_keys import keys_app

pytestmark = pytest.mark.unit


@pytest.fixture()
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    monkeypatch.setattr(cli_keys, "get_settings", lambda: settings)
    return CliRunner()


def test_a_key_is_shown_once_listed_without_it_and_revoked(keys: CliRunner) -> None:
    created = keys.invoke(keys_app, ["create", "--tenant", "acme", "--label", "ci"])
    assert created.exit_code == 0
    key_id, key = created.output.split()[2], created.output.strip().splitlines()[-1]
    listed = keys.invoke(keys_app, ["list"]).output
    assert key_id in listed and "acme" in listed and key not in listed
    assert keys.invoke(keys_app, ["revoke", key_id]).exit_code == 0
    again = keys.invoke(keys_app, ["revoke", key_id])
    assert again.exit_code == 1 and f"no active key '{key_id}'" in again.output


def test_a_key_needs_a_tenant_or_admin(keys: CliRunner) -> None:
    result = keys.invoke(keys_app, ["create"])
    assert result.exit_code == 1 and "(pass --tenant NAME or --admin)" in " ".join(result.output.split())


def test_only_active_keys_count_and_revoking_the_last_one_says_keys_are_no_longer_required(
        keys: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ragpress.base.api_keys import KeyStore
    from ragpress.base.database import make_engine

    store = KeyStore(make_engine(f"sqlite:///{tmp_path / 'keys.db'}"))
    first, _ = store.create_key("acme")
    second, _ = store.create_key(None, admin=True)
    assert store.revoke(first) and store.any_keys()
    assert "last active API key" not in caplog.text
    assert keys.invoke(keys_app, ["revoke", second]).exit_code == 0
    assert not store.any_keys() and "The last active API key was revoked" in caplog.text
