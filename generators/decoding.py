"""Greedy decoding from a prefilled KV cache, streaming each piece of text as it is produced.

Both the sequential-prefill generator and the cached-KV generator end here: they differ only in how the
cache and the first logits were made. Positions are passed explicitly because the cached path reuses
positions, so the cache length is not the next position.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Decoded:
    text: str
    token_ids: list[int]
    ttft_s: float  # from the start of decoding's caller-supplied clock to the first token
    finish_reason: str
    timings: dict[str, float] = field(default_factory=dict)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return ids


@torch.inference_mode()
def greedy_decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cache: Any,
    first_logits: torch.Tensor,
    next_position: int,
    max_new_tokens: int,
    started_at: float,
    on_text: Callable[[str], None] | None = None,
    forward_kwargs: dict[str, Any] | None = None,
) -> Decoded:
    """Decode greedily from ``first_logits`` (the last prefill position's logits, shape [vocab]).

    ``forward_kwargs`` reach the model on every step (the cached path passes its attention settings)."""
    stops = stop_token_ids(model, tokenizer)
    generated: list[int] = []
    emitted = ""
    logits = first_logits
    ttft = 0.0
    finish = "length"
    for step in range(max_new_tokens):
        token = int(torch.argmax(logits).item())
        if step == 0:
            ttft = time.perf_counter() - started_at
        if token in stops:
            finish = "stop"
            break
        generated.append(token)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        if on_text is not None and len(text) > len(emitted) and not text.endswith("\ufffd"):
            on_text(text[len(emitted):])
            emitted = text
        if step == max_new_tokens - 1:
            break
        out = model(
            input_ids=torch.tensor([[token]], device=model.device),
            position_ids=torch.tensor([[next_position]], device=model.device),
            past_key_values=cache,
            use_cache=True,
            **(forward_kwargs or {}),
        )
        cache = out.past_key_values
        logits = out.logits[0, -1]
        next_position += 1
    text = tokenizer.decode(generated, skip_special_tokens=True)
    if on_text is not None and len(text) > len(emitted):
        on_text(text[len(emitted):])
    return Decoded(text=text.strip(), token_ids=generated, ttft_s=ttft, finish_reason=finish)
