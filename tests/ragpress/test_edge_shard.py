"""An Edge shard folder: created with the store's vector layout and payload indexes, refused at another size."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragpress.base.edge_shard import EdgeStoreError, load_or_create, shard_config, shard_dense_size
from ragpress.base.schema import INDEXED_FIELDS

pytestmark = pytest.mark.integration


def test_a_new_shard_records_its_size_and_indexes_every_filtered_field(tmp_path: Path) -> None:
    assert shard_dense_size(tmp_path) is None
    shard = load_or_create(tmp_path, shard_config(8, "cosine", {"m": 8}), 8, INDEXED_FIELDS)
    try:
        assert set(shard.info().payload_schema) == {f["field_name"] for f in INDEXED_FIELDS}
    finally:
        shard.close()
    assert shard_dense_size(tmp_path) == 8


def test_a_field_added_later_is_indexed_when_the_shard_loads(tmp_path: Path) -> None:
    load_or_create(tmp_path, shard_config(8, "l2"), 8, INDEXED_FIELDS[:1]).close()
    shard = load_or_create(tmp_path, shard_config(8, "l2"), 8, INDEXED_FIELDS)
    try:
        assert len(shard.info().payload_schema) == len(INDEXED_FIELDS)
    finally:
        shard.close()


def test_a_shard_of_another_size_is_refused_before_it_loads(tmp_path: Path) -> None:
    load_or_create(tmp_path, shard_config(8, "cosine"), 8, ()).close()
    with pytest.raises(EdgeStoreError, match="holds 8-d vectors, not embedding_dim=16"):
        load_or_create(tmp_path, shard_config(16, "cosine"), 16, ())
