"""The command line: clear errors that say what to do."""

import os
import subprocess
import sys

import pytest
from support import free_port, models_dir
from typer.testing import CliRunner

from ragpress.cli import app


@pytest.mark.unit
def test_calibration_without_its_dev_data_says_where_to_point_it(tmp_path):
    result = CliRunner().invoke(app, ["models", "calibrate", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "point --data at that folder" in " ".join(result.output.split())


@pytest.mark.unit
@pytest.mark.parametrize(("args", "message"), [
    (["-c", "my docs"], "'my docs' cannot name a collection"),
    (["-c", "d", "--delete-missing"], "--delete-missing removes the documents of files gone from a folder: give at "
                                      "least one folder."),
    (["-c", "d"], "nothing to ingest: no file of a supported type."),
])
def test_ingest_refuses_what_it_cannot_do_before_reaching_any_server(tmp_path, args, message):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "photo.png"), *args, "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and message in " ".join(result.output.split())


@pytest.mark.integration
def test_an_embedded_query_above_the_servers_ceiling_says_which_setting_bounds_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "museum.txt").write_text("The museum opens at nine in the morning.")
    env = {**os.environ, "RAGPRESS_HOME": str(tmp_path / "home"), "RAGPRESS_PORT": str(free_port()),
           "RAGPRESS_MODELS_DIR": str(models_dir()), "RAGPRESS_MAX_TOP_K": "2"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ragpress", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    assert cli("ingest", str(tmp_path / "docs"), "-c", "c").returncode == 0
    plain = ("--no-generate", "--pipeline", "plain")
    refused = cli("query", "When does the museum open?", "-c", "c", "--top-k", "5", *plain)
    assert refused.returncode == 1
    assert "above this server's limit of 2" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr
    assert cli("query", "When does the museum open?", "-c", "c", "--top-k", "2", *plain).returncode == 0
    # Without --top-k the built-in pipeline would retrieve its own 4.
    default = cli("query", "When does the museum open?", "-c", "c", *plain)
    assert default.returncode == 1 and "pipeline 'plain'" in default.stderr
