"""What the fitting scripts measure beside the evidence: the generator's own confidence in its reply and its
readiness to decline (the answer-side sufficiency signals), and how well a signal separates two groups (AUC).

Offline only: the shipped gate reads evidence alone (``ragpress.rerankers.sufficiency``), since it decides before
anything is generated; these are what ``fit_sufficiency`` and ``bench.gate_threshold`` compared it against.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import numpy as np
import torch


@torch.inference_mode()
def continuation_logprobs(lm: Any, prompt_ids: list[int], continuations: list[list[int]]) -> list[list[float]]:
    """Each continuation's token log-probabilities after the prompt (the prompt is run once; its cache is
    copied per continuation, since a forward pass extends the cache in place)."""
    out = lm(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    results = []
    for ids in continuations:
        if not ids:
            results.append([])
            continue
        step = lm(input_ids=torch.tensor([ids[:-1]]), past_key_values=copy.deepcopy(out.past_key_values),
                  use_cache=True) if len(ids) > 1 else None
        logits = out.logits[0, -1:] if step is None else torch.cat([out.logits[0, -1:], step.logits[0]])
        logp = torch.log_softmax(logits.float(), dim=-1)
        results.append(logp.gather(1, torch.tensor(ids)[:, None])[:, 0].tolist())
    return results


def answer_features(lm: Any, tokenizer: Any, prompt_ids: list[int], reply: str, decline: str) -> dict[str, float]:
    """The generator's confidence in ``reply`` and its readiness to ``decline`` under ``prompt_ids``."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    answer, declined = continuation_logprobs(lm, prompt_ids, [encode(reply), encode(decline)])
    # An empty reply is the model stopping at once: as unsure as it can be, not "certain".
    return {
        "answer_logprob": statistics.mean(answer) if answer else float(np.log(1e-6)),
        "answer_min_logprob": min(answer) if answer else float(np.log(1e-6)),
        "decline_logprob": statistics.mean(declined),
    }


def auc(positives: list[float], negatives: list[float]) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney statistic)."""
    if not positives or not negatives:
        return float("nan")
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))
