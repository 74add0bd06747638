"""How close a written answer is to the reference answers, with SQuAD's normalisation (lower case, no punctuation,
no articles): token F1, exact match, and answer recall, the share of a reference's tokens the answer holds."""

from __future__ import annotations

import re
import string
from collections import Counter


def _normalize(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def answer_recall(prediction: str, answers: list[str]) -> float:
    """The share of a reference answer's tokens the prediction holds (best over references): unlike F1, not
    lowered by the words a sentence answer puts around a short reference span."""
    found = Counter(_normalize(prediction))
    return max((sum((Counter(gold) & found).values()) / len(gold) for a in answers if (gold := _normalize(a))),
               default=0.0)


def exact_match(prediction: str, answers: list[str]) -> bool:
    return any(_normalize(prediction) == _normalize(answer) for answer in answers)


def f1(prediction: str, answers: list[str]) -> float:
    best = 0.0
    for answer in answers:
        pred, gold = _normalize(prediction), _normalize(answer)
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
