"""An Edge shard folder opened or created with the vector layout and payload indexes the Edge store expects.

The layout: a dense vector (``DENSE``, the store's size and distance) and a sparse one (``SPARSE``) whose IDF
the engine applies at query time; optional HNSW and optimizer settings; a payload index on every field the
store filters on, created on load too, so a crash between creating a shard and indexing its fields never leaves
filters unindexed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from ragpress.base.edge_points import DENSE, SPARSE

DISTANCES = {"cosine": edge.Distance.Cosine, "dot_product": edge.Distance.Dot, "l2": edge.Distance.Euclid}
_SCHEMAS = {
    "keyword": edge.PayloadSchemaType.Keyword, "integer": edge.PayloadSchemaType.Integer,
    "float": edge.PayloadSchemaType.Float, "bool": edge.PayloadSchemaType.Bool,
    "datetime": edge.PayloadSchemaType.Datetime, "uuid": edge.PayloadSchemaType.Uuid,
    "text": edge.PayloadSchemaType.Text,
}


class EdgeStoreError(RuntimeError):
    """An Edge operation failed; the message names the index."""


def shard_config(embedding_dim: int, similarity: str, hnsw_config: Mapping[str, int] | None = None,
                 optimizers_config: Mapping[str, Any] | None = None) -> edge.EdgeConfig:
    """A new shard's configuration (``similarity``: a key of ``DISTANCES``)."""
    hnsw = None
    if hnsw_config:
        params = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000, **hnsw_config}
        hnsw = edge.HnswIndexConfig(**params)
    return edge.EdgeConfig(
        vectors={DENSE: edge.EdgeVectorParams(size=embedding_dim, distance=DISTANCES[similarity])},
        # IDF is applied by the engine at query time, which BM25 document vectors (term frequencies) need.
        sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        hnsw_config=hnsw,
        optimizers=edge.EdgeOptimizersConfig(**optimizers_config) if optimizers_config else None,
    )


def load_or_create(folder: Path, config: edge.EdgeConfig, embedding_dim: int,
                   indexed_fields: Iterable[Mapping[str, Any]]) -> edge.EdgeShard:
    """The shard in ``folder`` (created with ``config`` when there is none) with ``indexed_fields``
    (qdrant-haystack's ``payload_fields_to_index`` format) indexed. An existing shard of another dense size is
    refused before it is loaded, so a refused shard never stays open."""
    if (folder / "edge_config.json").exists():
        size = shard_dense_size(folder)
        if size is not None and size != embedding_dim:
            raise EdgeStoreError(f"The index at {folder} holds {size}-d vectors, not embedding_dim={embedding_dim}.")
        shard = edge.EdgeShard.load(str(folder))
    else:
        shard = edge.EdgeShard.create(str(folder), config)
    present = set(shard.info().payload_schema)
    for field in indexed_fields:
        if field["field_name"] not in present:
            shard.update(edge.UpdateOperation.create_field_index(field["field_name"], _schema(field)))
    return shard


def shard_dense_size(folder: Path) -> int | None:
    """The dense vector size recorded in an Edge folder's config, or None if it has none."""
    config_file = folder / "edge_config.json"
    if not config_file.exists():
        return None
    vectors = json.loads(config_file.read_text()).get("vectors", {})
    params = vectors.get(DENSE) if isinstance(vectors, dict) else None
    return int(params["size"]) if isinstance(params, dict) and "size" in params else None


def _schema(field: Mapping[str, Any]) -> Any:
    spec = field.get("field_schema", "keyword")
    if isinstance(spec, str):
        return _SCHEMAS[spec]
    kind = spec.get("type", "keyword")
    if kind == "keyword":
        return edge.KeywordIndexParams(is_tenant=spec.get("is_tenant"))
    return _SCHEMAS[kind]
