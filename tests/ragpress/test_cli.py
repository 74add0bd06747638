"""The command line: clear errors that say what to do."""

import pytest
from typer.testing import CliRunner

from ragpress.cli import app

pytestmark = pytest.mark.unit


def test_calibration_without_its_dev_data_says_where_to_point_it(tmp_path):
    result = CliRunner().invoke(app, ["models", "calibrate", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "point --data at that folder" in " ".join(result.output.split())
