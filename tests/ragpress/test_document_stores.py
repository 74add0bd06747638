"""The process's index, built from settings: one owner per embedded folder, dense search in every engine, a
serialized embedded engine that closes between calls and reopens on next use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from haystack import Document

from ragpress.base import document_stores
from ragpress.base.document_stores import IndexUnavailable, dense_search, make_document_store, scope_filters
from ragpress.base.settings import Settings

pytestmark = pytest.mark.integration

DIM = 4


@pytest.fixture()
def four_dimensions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document_stores, "embedding_dim", lambda _settings: DIM)  # no embedder to load


def units(store: Any) -> None:
    store.write_documents([
        Document(id=f"u{i}", content=f"unit {i}", embedding=[float(i == j) for j in range(DIM)],
                 meta={"tenant": "t", "collection": "c" if i < 3 else "other"})
        for i in range(DIM)])


@pytest.mark.usefixtures("four_dimensions")
@pytest.mark.parametrize("engine", ["edge", "local"])
def test_a_second_opener_of_an_embedded_index_is_told_it_is_owned(tmp_path: Path, engine: str) -> None:
    settings = Settings(data_dir=tmp_path, embedded_engine=engine)
    owner = make_document_store(settings)
    try:
        with pytest.raises(IndexUnavailable, match="owned by another process"):
            make_document_store(settings)
    finally:
        owner.close()


@pytest.mark.usefixtures("four_dimensions")
@pytest.mark.parametrize("engine", ["edge", "local"])
def test_dense_search_finds_the_nearest_unit_within_its_scope_in_either_engine(tmp_path: Path, engine: str) -> None:
    store = make_document_store(Settings(data_dir=tmp_path, embedded_engine=engine))
    try:
        units(store)
        [found] = dense_search(store, [0.0, 0.0, 0.0, 1.0], scope_filters("t", "c"), top_k=1)
        [unscoped] = dense_search(store, [0.0, 0.0, 0.0, 1.0], scope_filters("t", "other"), top_k=1)
    finally:
        store.close()
    assert found.id != "u3" and unscoped.id == "u3"


@pytest.mark.usefixtures("four_dimensions")
def test_a_closed_embedded_index_frees_its_folder_and_reopens_on_next_use(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedded_engine="local")
    store = make_document_store(settings)
    units(store)
    store.close()
    make_document_store(settings).close()  # another owner may open it now
    assert store.count_documents() == DIM
    store.close()
