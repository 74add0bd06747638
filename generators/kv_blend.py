"""CacheBlend: recompute the few context tokens whose cached states miss the other chunks the most.

Each chunk's states were encoded after the shared prefix alone, so none of its tokens attended to the other
retrieved chunks. Laid out one after another (``KVContextBuilder.assemble(..., sequential=True)``), the
first chunk's states are exact and the others lack their cross-chunk attention. CacheBlend's observation
is that this deviation concentrates on a small share of tokens. A probe pass through the first two layers
over the whole context (a fraction of a full prefill) finds them: the tokens whose layer-1 values differ
most from their cached ones. Those tokens alone then go through every layer, attending to everything
before them, and their fresh states replace the cached ones. Everything else stays as loaded.

    >>> context = builder.assemble(chunks, entries, 1.0, 1.0, sequential=True)
    >>> recompute(builder.lm, context, share=0.15)   # returns how many tokens were recomputed
"""

from __future__ import annotations

import contextlib
import math

import torch
from transformers import PreTrainedModel

from ragpress.generators.kv_context import ParallelContext
from ragpress.generators.parallel_attention import ParallelLayout, ProbeDone, ValueProbe, build_cache

PROBE_LAYER = 1  # CacheBlend selects on the second layer: the first with cross-token information


@torch.inference_mode()
def deviations(model: PreTrainedModel, context: ParallelContext) -> torch.Tensor:
    """Per context token, the L2 distance between its cached layer-1 values and a sequential pass's."""
    start, ids = context.layout.prefix_len, context.token_ids
    prefix = build_cache(context.keys[:, :, :start].clone(), context.values[:, :, :start].clone())
    probe = ValueProbe(PROBE_LAYER)
    with contextlib.suppress(ProbeDone):
        model(
            input_ids=torch.tensor([ids]),
            position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
            past_key_values=prefix,
            use_cache=True,
            value_probe=probe,
        )
    assert probe.values is not None, "the probed layer was never reached"
    fresh = probe.values[0, :, start:]
    cached = context.values[PROBE_LAYER, :, start : context.length]
    return (fresh - cached).norm(dim=-1).sum(dim=0)


def select(deviation: torch.Tensor, share: float) -> torch.Tensor:
    """Indices (ascending) of the ``share`` of tokens that deviate most."""
    count = min(deviation.numel(), math.ceil(share * deviation.numel()))
    return deviation.topk(count).indices.sort().values


@torch.inference_mode()
def recompute(model: PreTrainedModel, context: ParallelContext, share: float) -> int:
    """Recompute the most deviating ``share`` of a sequentially laid-out context in place; returns how
    many tokens were recomputed."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be in [0, 1]")
    if share == 0.0 or not context.token_ids:
        return 0
    layout = context.layout
    if not torch.equal(layout.key_positions, torch.arange(context.length)):  # chunks share positions
        raise ValueError("CacheBlend needs the sequential layout: assemble(..., sequential=True)")
    chosen = select(deviations(model, context), share)
    start, total = layout.prefix_len, context.length
    stale = torch.ones(total - start, dtype=torch.bool)
    stale[chosen] = False  # the chosen tokens attend to each other's fresh states, never the stale ones
    blend = ParallelLayout(
        prefix_len=start,
        key_positions=layout.key_positions,
        question_position=layout.question_position,
        context_keep=stale,
        tail_positions=start + chosen,
    )
    cache = build_cache(context.keys, context.values, total)
    model(
        input_ids=torch.tensor([[context.token_ids[i] for i in chosen.tolist()]]),
        position_ids=(start + chosen).unsqueeze(0),
        past_key_values=cache,
        use_cache=True,
        ape_layout=blend,
    )
    for index, layer in enumerate(cache.layers):
        # the fresh states were appended after the context: move them into the chosen tokens' slots
        context.keys[index, :, start + chosen] = layer.keys[0, :, total:].clone()
        context.values[index, :, start + chosen] = layer.values[0, :, total:].clone()
    return int(chosen.numel())
