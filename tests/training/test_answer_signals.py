"""The answer-side signals the fitting scripts compare the gate against, and the AUC they measure with."""

from __future__ import annotations

import pytest
import torch

from ragpress.base.model_loading import causal_lm
from ragpress.training.answer_signals import auc, continuation_logprobs


@pytest.mark.unit
def test_auc_is_the_chance_a_positive_outscores_a_negative_with_ties_counting_half() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5, 0.9], [0.5]) == 0.75


@pytest.mark.integration
@pytest.mark.slow
def test_continuations_are_scored_as_one_teacher_forced_pass_would_score_them() -> None:
    lm, tokenizer = causal_lm("SmolLM2-135M-Instruct")
    prompt = tokenizer.encode("The capital of France is", add_special_tokens=False)
    answers = [tokenizer.encode(t, add_special_tokens=False) for t in (" Paris.", " a large green bicycle")]
    scored = continuation_logprobs(lm, prompt, answers)
    for ids, found in zip(answers, scored, strict=True):
        with torch.inference_mode():
            logits = lm(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])[:, 0]
        assert found == pytest.approx(expected.tolist(), abs=1e-4)
    assert sum(scored[0]) / len(scored[0]) > sum(scored[1]) / len(scored[1])
