"""The writer's contract: what it serializes to, and that it refuses what the index could not read back.

Writing, idempotence and the retirement of older versions run end to end in tests/workers/test_ingestion.py.
"""

from __future__ import annotations

import pytest
from haystack import Document
from serialization import assert_pinned, assert_restored

from ragpress.base import schema
from ragpress.base.meta_limits import MetaError
from ragpress.indexers.chunk_writer import ChunkWriter


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(ChunkWriter(), {"replace_previous_versions": True})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(ChunkWriter, {"replace_previous_versions": False})


@pytest.mark.integration
def test_a_unit_whose_meta_the_index_could_not_read_back_is_refused_before_anything_is_written() -> None:
    meta = {schema.TENANT: "t", schema.COLLECTION: "c", schema.DOC_ID: "d", schema.CONTENT_HASH: "h",
            schema.LEVEL: "chunk", schema.POSITION: 0, "nested": {"too": {"deep": 1}}}
    with pytest.raises(MetaError, match="nested"):
        ChunkWriter().run(documents=[Document(content="x", meta=meta, embedding=[0.0] * 384)])
