"""Fixtures the in-process ingestion tests share: the built-in ingestion pipeline, warmed once per module, and a
job store of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragpress.pipelines.loader import builtin_yaml, load_pipeline
from ragpress.workers.job_store import JobStore


@pytest.fixture(scope="module")
def pipeline() -> Any:
    loaded = load_pipeline(builtin_yaml("ingestion"))
    loaded.warm_up()
    return loaded


@pytest.fixture
def job_store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
