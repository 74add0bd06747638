"""Shared test set-up: a throwaway RAGPRESS_HOME per run, the real model cache, servers found or skipped."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# Set before any ragpress import reads settings: data goes to a temporary home, models come from the
# cache `make test` filled (RAGPRESS_MODELS_DIR, or the default home's).
_MODELS = Path(os.environ.get("RAGPRESS_MODELS_DIR") or
               Path(os.environ.get("RAGPRESS_HOME", Path.home() / ".ragpress")) / "models")
_HOME = Path(tempfile.mkdtemp(prefix="ragpress-test-home-"))
os.environ["RAGPRESS_HOME"] = str(_HOME)
os.environ["RAGPRESS_MODELS_DIR"] = str(_MODELS)
# Cached KV states are computed at query time in tests unless a test asks for the eager default itself: the suite
# ingests thousands of documents that no KV generator reads (tests/ragpress/test_cli_eval.py, the workers' KV
# tests and test_settings.py cover the eager default).
os.environ["RAGPRESS_KV_PRECOMPUTE"] = "lazy"
for _var in ("QDRANT_URL", "REDIS_URL", "DATABASE_URL", "RAGPRESS_BROKER_URL", "RAGPRESS_DATABASE_URL",
             "RAGPRESS_QDRANT_URL", "RAGPRESS_CONFIG"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _MODELS


@pytest.fixture(scope="session")
def xquad() -> dict[str, Any]:
    return json.loads((FIXTURES / "xquad_subset.json").read_text())
