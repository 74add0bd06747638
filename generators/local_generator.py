"""Answer a question from retrieved passages with a local causal LM by plain sequential prefill."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import StreamingChunk

from ragpress.base import model_loading
from ragpress.base.devices import check_device
from ragpress.base.roles import Role
from ragpress.generators.decoding import greedy_decode
from ragpress.generators.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    PromptPieces,
    build_prompt,
    new_token_limit,
    passage_text,
    passages_for_prompt,
)

NO_ANSWER = "The documents do not contain the answer to this question."


@component
class LocalGenerator:
    """Generates a short answer grounded in ``documents`` with a local model (sequential prefill).

    Passages are placed most relevant last, nearest the question; the least relevant are left out when
    they would exceed ``max_context_tokens``. With no passages it abstains without calling the model.

    Usage:
        >>> gen = LocalGenerator(model="SmolLM2-135M-Instruct", max_new_tokens=48)
        >>> gen.warm_up()
        >>> gen.run(query="When was the tower finished?", documents=[Document(content="...in 1889.")])
        {'replies': ['It was finished in 1889.'], 'meta': [{'ttft_ms': ..., 'abstained': False, ...}]}
    """

    role: ClassVar[Role] = Role.GENERATOR

    def __init__(
        self,
        model: str = "SmolLM2-135M-Instruct",
        max_new_tokens: int = 64,
        max_context_tokens: int = 1536,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        device: str = "auto",
    ) -> None:
        new_token_limit(None, max_new_tokens)  # the same check as a run's override
        if max_context_tokens < 16:
            raise ValueError("max_context_tokens must be at least 16.")
        if not system_prompt.strip():
            raise ValueError("system_prompt must not be empty.")
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.max_context_tokens = max_context_tokens
        self.system_prompt = system_prompt
        self.device = check_device(device)
        self._lm: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> None:
        if self._lm is None:
            self._lm, self._tokenizer = model_loading.causal_lm(self.model, self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            max_new_tokens=self.max_new_tokens,
            max_context_tokens=self.max_context_tokens,
            system_prompt=self.system_prompt,
            device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalGenerator:
        return default_from_dict(cls, data)

    @component.output_types(replies=list[str], meta=list[dict[str, Any]])
    def run(
        self,
        *,
        query: str,
        documents: list[Document] | None = None,
        max_new_tokens: int | None = None,
        streaming_callback: Callable[[StreamingChunk], None] | None = None,
    ) -> dict[str, Any]:
        """
        :param query: the question.
        :param documents: the passages to answer from, most relevant first; none means abstain.
        :param max_new_tokens: overrides the init value for this run.
        :param streaming_callback: called with each new piece of the answer.
        :returns: ``replies`` (one answer) and ``meta`` (time to first token, abstention, token counts).
        """
        max_new_tokens = new_token_limit(max_new_tokens, self.max_new_tokens)
        documents = [d for d in (documents or []) if passage_text(d).strip()]
        if not documents:
            return abstention_result(streaming_callback)
        self.warm_up()
        pieces = self.fit_to_budget(query, documents)
        started = time.perf_counter()
        ids = torch.tensor([pieces.sequential()], device=self._lm.device)
        with torch.inference_mode():
            # only the last position's logits are read: the vocabulary projection of every prompt token
            # would cost about a fifth of the prefill
            out = self._lm(input_ids=ids, use_cache=True, logits_to_keep=1)
        decoded = greedy_decode(
            self._lm,
            self._tokenizer,
            out.past_key_values,
            out.logits[0, -1],
            next_position=ids.shape[1],
            max_new_tokens=max_new_tokens,
            started_at=started,
            on_text=_stream_to(streaming_callback),
        )
        meta = {
            "model": self.model,
            "mode": "sequential",
            "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": len(decoded.token_ids),
            "ttft_ms": decoded.ttft_s * 1000,
            "finish_reason": decoded.finish_reason,
            "abstained": says_no_answer(decoded.text),
        }
        return {"replies": [decoded.text], "meta": [meta]}

    def fit_to_budget(self, query: str, documents: list[Document]) -> PromptPieces:
        """Prompt pieces for the most relevant passages that fit ``max_context_tokens``."""
        size = lambda text: len(self._tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
        texts = passages_for_prompt(documents, size, self.max_context_tokens)
        return build_prompt(self._tokenizer, query, texts, self.system_prompt)


def _stream_to(callback: Callable[[StreamingChunk], None] | None) -> Callable[[str], None] | None:
    if callback is None:
        return None
    return lambda text: callback(StreamingChunk(content=text))


def abstention_result(callback: Callable[[StreamingChunk], None] | None = None) -> dict[str, Any]:
    if callback is not None:
        callback(StreamingChunk(content=NO_ANSWER))
    meta = {"mode": "abstained", "prompt_tokens": 0, "completion_tokens": 0, "ttft_ms": 0.0,
            "finish_reason": "abstained", "abstained": True}
    return {"replies": [NO_ANSWER], "meta": [meta]}


_NO_ANSWER_PHRASES = (
    "do not contain", "does not contain", "don't contain", "doesn't contain", "not mentioned",
    "no information", "not provided", "i don't know", "i do not know", "cannot answer", "can't answer",
    "not enough information", "does not say", "do not say", "doesn't say", "don't say",
)


def says_no_answer(text: str) -> bool:
    """Whether an answer says the passages do not hold it (the response reports this as abstained)."""
    lowered = text.lower()
    return not lowered.strip() or any(phrase in lowered for phrase in _NO_ANSWER_PHRASES)
