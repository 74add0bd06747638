"""The pruner model: query isolation in the joint pass, cosine fusion, and saved weights reloading."""

from pathlib import Path

import pytest
import torch

from ragpress.scoring.provence_model import ProvenceConfig, load, new_trainable, save

pytestmark = pytest.mark.integration


def test_interaction_heads_save_and_reload_to_the_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    batch = tokenizer(["when did it open"], ["The bridge opened in 2004. It is tall."], return_tensors="pt")
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        relevance, keep = model(*args)
    save(model, tmp_path)
    reloaded, _ = load(tmp_path)
    assert reloaded.config.interaction
    with torch.no_grad():
        reloaded_relevance, reloaded_keep = reloaded(*args)
    assert keep.shape == batch["input_ids"].shape
    assert torch.allclose(relevance, reloaded_relevance, atol=1e-4)
    assert torch.allclose(keep, reloaded_keep, atol=1e-4)


def test_interaction_keep_logits_depend_on_the_query() -> None:
    torch.manual_seed(0)
    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    passage = "The bridge opened in 2004. It is tall."
    outputs = []
    for query in ["when did it open", "what colour is the sky"]:
        batch = tokenizer([query], [passage], return_tensors="pt", padding="max_length", max_length=32)
        with torch.no_grad():
            outputs.append(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[1])
    assert not torch.allclose(outputs[0], outputs[1])


def test_the_query_states_are_the_bi_encoders_query_embedding_whatever_the_passage() -> None:
    from ragpress.base.model_loading import sentence_transformer

    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    query = "when did the bridge open"
    pooled = []
    for passage in ["The bridge opened in 2004.", "Cats sleep for most of the day, often sixteen hours."]:
        batch = tokenizer([query], [passage], return_tensors="pt")
        with torch.no_grad():
            states = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        pooled.append(states[0, batch["token_type_ids"][0] == 0].mean(0))
    bi_encoder = torch.from_numpy(
        sentence_transformer("all-MiniLM-L6-v2").encode(query, normalize_embeddings=True)
    )
    assert torch.allclose(pooled[0], pooled[1], atol=1e-5)
    assert torch.nn.functional.cosine_similarity(pooled[0], bi_encoder, dim=0) > 0.9999


def test_a_fresh_model_ranks_by_the_cosine_and_keeps_tokens_of_relevant_passages_more() -> None:
    # The heads start as no-ops, so before any training the scores are the fused cosines: a passage about
    # the query outranks an unrelated one, and so do its tokens' keep logits.
    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    query = "when did the bridge open"
    passages = ["The bridge opened to traffic in 2004.", "Cats sleep for most of the day, often sixteen hours."]
    batch = tokenizer([query] * 2, passages, return_tensors="pt", padding=True)
    with torch.no_grad():
        relevance, keep = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    in_passage = (batch["token_type_ids"] == 1) & batch["attention_mask"].bool()
    assert relevance[0] > relevance[1]
    assert keep[0][in_passage[0]].mean() > keep[1][in_passage[1]].mean()
