"""The pruner model with query/passage interaction heads: saved weights reload to the same outputs."""

from pathlib import Path

import pytest
import torch

from pruners.model import ProvenceConfig, load, new_trainable, save

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
