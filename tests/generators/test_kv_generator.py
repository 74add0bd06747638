"""KVCacheGenerator: same contract as LocalGenerator, cached parallel path, safe fallbacks, YAML round trip."""

import logging

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base.schema import CONTENT_HASH, DOC_ID, END, START, content_hash
from ragpress.generators.kv_context import builder_for
from ragpress.generators.kv_generator import SHIPPED_CALIBRATIONS, KVCacheGenerator, calibration_name
from ragpress.generators.kv_store import LocalKVStore, open_store
from ragpress.generators.local_generator import LocalGenerator
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT
from ragpress.indexers.context_expander import merge_adjacent

from .conftest import DOCUMENT, SPANS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "When was the Eiffel Tower finished?"


def chunks() -> list[Document]:
    return [
        Document(content=DOCUMENT[s:e], meta={DOC_ID: "eiffel", CONTENT_HASH: content_hash(DOCUMENT),
                                             START: s, END: e})
        for s, e in SPANS
    ]


@pytest.fixture
def store_config(tmp_path):
    return {"backend": "local", "path": str(tmp_path / "kv")}


def generator(store_config, **kwargs) -> KVCacheGenerator:
    gen = KVCacheGenerator(store=store_config, max_new_tokens=6, temperature=0.8, scale=1.0, **kwargs)
    gen.warm_up()
    return gen


def test_precomputed_chunks_are_loaded_not_re_read_and_the_reply_streams(store_config):
    from ragpress.generators.kv_context import invalidate_document_kv, precompute_document_kv

    assert precompute_document_kv(DOCUMENT, chunks(), doc_id="eiffel", store=store_config) == 2
    streamed = []
    result = generator(store_config).run(query=QUESTION, documents=chunks(),
                                         streaming_callback=lambda c: streamed.append(c.content))
    meta = result["meta"][0]
    assert meta["mode"] == "parallel"
    assert (meta["kv_chunks_loaded"], meta["kv_chunks_encoded"]) == (2, 0)
    assert meta["prefilled_tokens"] < meta["prompt_tokens"] / 3
    sequential = LocalGenerator(max_new_tokens=2).run(query=QUESTION, documents=chunks())["meta"][0]
    assert set(sequential) <= set(meta) | {"mode"}
    assert "".join(streamed).strip() == result["replies"][0]
    assert invalidate_document_kv("eiffel", store_config) == 2  # document deleted or replaced
    prefilled = generator(store_config, on_miss="prefill").run(query=QUESTION, documents=chunks())
    assert prefilled["meta"][0]["mode"] == "sequential"


def test_a_unit_the_expander_merged_is_read_from_its_chunks_entries_never_encoded_anew(store_config):
    from ragpress.generators.kv_context import precompute_document_kv

    precompute_document_kv(DOCUMENT, chunks(), doc_id="eiffel", store=store_config)
    merged = merge_adjacent(*chunks())
    meta = generator(store_config, on_miss="prefill").run(query=QUESTION, documents=[merged])["meta"][0]
    assert (meta["mode"], meta["kv_chunks_loaded"], meta["kv_chunks_encoded"]) == ("parallel", 1, 0)
    assert meta["prefilled_tokens"] < meta["prompt_tokens"] / 3


def test_a_missing_entry_falls_back_to_sequential_prefill_with_a_warning(store_config, caplog):
    with caplog.at_level(logging.WARNING):
        result = generator(store_config, on_miss="prefill").run(query=QUESTION, documents=chunks())
    assert result["meta"][0]["mode"] == "sequential"
    assert "falls back to sequential prefill" in caplog.text
    assert result["meta"][0]["kv_missing_doc_ids"] == ["eiffel"]  # what to queue for lazy pre-compute
    assert (result["meta"][0]["kv_chunks_loaded"], result["meta"][0]["kv_chunks_missing"]) == (0, len(chunks()))
    assert result["replies"][0]


def test_a_corrupt_entry_is_never_used_it_is_re_encoded_with_a_warning(store_config, caplog):
    gen = generator(store_config)
    clean = gen.run(query=QUESTION, documents=chunks())["replies"][0]
    builder = builder_for(gen.model, store_config, gen.quantization, gen.system_prompt)
    store = LocalKVStore(store_config["path"])
    for chunk in chunks():
        key = builder.keys_for(chunk)[-1]  # the entries the first run encoded
        data = bytearray(store.get(key))
        data[len(data) // 2] ^= 0xFF
        store.put(key, bytes(data))
    with caplog.at_level(logging.WARNING):
        result = gen.run(query=QUESTION, documents=chunks())
    assert "is corrupt" in caplog.text
    assert result["meta"][0]["kv_chunks_encoded"] == 2
    assert result["replies"][0] == clean


def test_no_documents_means_abstaining_without_the_model(store_config):
    result = KVCacheGenerator(store=store_config).run(query=QUESTION, documents=[])
    assert result["meta"][0]["abstained"] is True


def test_a_blend_share_recomputes_that_share_of_the_context_across_chunks(store_config):
    gen = generator(store_config, blend_share=0.25)
    meta = gen.run(query=QUESTION, documents=chunks())["meta"][0]
    context_tokens = meta["prompt_tokens"] - meta["prefilled_tokens"] - len(gen._builder.prefix_ids)
    assert meta["mode"] == "blend"
    assert meta["kv_recomputed_tokens"] == -(-context_tokens // 4)  # a quarter, rounded up
    parallel = gen.run(query=QUESTION, documents=chunks(), blend_share=0.0)["meta"][0]  # the runtime value wins
    assert (parallel["mode"], parallel["kv_recomputed_tokens"]) == ("parallel", 0)


def test_corrections_come_from_the_request_then_init_then_the_calibration(store_config):
    gen = KVCacheGenerator(store=store_config)
    gen.warm_up()
    shipped = SHIPPED_CALIBRATIONS[gen.model, gen.system_prompt]
    assert gen.corrections() == (shipped["temperature"], shipped["scale"])  # a fresh install starts calibrated
    open_store(store_config).put_settings(calibration_name(gen.model, gen.system_prompt),
                                          {"temperature": 0.85, "scale": 0.95})
    assert gen.corrections() == (0.85, 0.95)  # a calibration run on this server wins
    assert gen.corrections(temperature=0.6) == (0.6, 0.95)
    pinned = KVCacheGenerator(store=store_config, temperature=0.75, scale=1.0)
    pinned.warm_up()
    assert pinned.corrections() == (0.75, 1.0)


def test_invalid_settings_are_refused_at_construction():
    with pytest.raises(ValueError, match="quantization"):
        KVCacheGenerator(quantization="int3")
    with pytest.raises(ValueError, match="on_miss"):
        KVCacheGenerator(on_miss="sometimes")
    with pytest.raises(ValueError, match="temperature"):
        KVCacheGenerator(temperature=0)
    with pytest.raises(ValueError, match="blend_share"):
        KVCacheGenerator(blend_share=1.5)


@pytest.mark.unit
def test_the_component_round_trips_through_pipeline_yaml(store_config):
    pipeline = Pipeline()
    pipeline.add_component("generator", KVCacheGenerator(store=store_config, quantization="int4",
                                                         temperature=0.8, scale=0.95, on_miss="prefill",
                                                         blend_share=0.1))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["ragpress"])
    restored = loaded.get_component("generator")
    assert isinstance(restored, KVCacheGenerator)
    assert restored.to_dict() == pipeline.get_component("generator").to_dict()


KV_DEFAULTS = {"model": "SmolLM2-135M-Instruct", "store": None, "quantization": "int4", "temperature": None,
               "scale": None, "on_miss": "encode", "blend_share": 0.0, "max_new_tokens": 64, "max_context_tokens": 4096,
               "system_prompt": DEFAULT_SYSTEM_PROMPT, "device": "auto"}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(KVCacheGenerator(), KV_DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(KVCacheGenerator, {**KV_DEFAULTS, "store": {"backend": "local", "path": "/tmp/kv"},
                                       "quantization": "int4", "temperature": 0.8, "scale": 1.0, "on_miss": "prefill",
                                       "blend_share": 0.2, "max_new_tokens": 8, "max_context_tokens": 512,
                                       "system_prompt": "Answer briefly.", "device": "cpu"})


@pytest.mark.unit
def test_a_gpu_is_refused_until_the_kv_path_runs_there() -> None:
    with pytest.raises(ValueError, match="device"):
        KVCacheGenerator(device="cuda")
