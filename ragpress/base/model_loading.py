"""Load each model once per process and share it between pipelines and worker threads.

Components name models by registry name, Hugging Face id or directory; this module resolves the name
through the registry (never downloading) and keeps one loaded instance per (name, kind).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ragpress.base.models import resolve

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def _quiet() -> None:
    """Loading progress bars are noise in a CLI's output and in server logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load_once(kind: str, name: str, loader: Any) -> Any:
    _quiet()
    key = (kind, name)
    with _lock:
        if key not in _loaded:
            _loaded[key] = loader(resolve(name))
        return _loaded[key]


def sentence_transformer(name: str) -> SentenceTransformer:
    """A SentenceTransformer on the CPU, loaded from local files only."""

    def load(path: str) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device="cpu", local_files_only=True)

    return _load_once("sentence-transformer", name, load)


def causal_lm(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal language model (fp32, eval mode, CPU) and its tokenizer, from local files only."""

    def load(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        model.eval()
        return model, tokenizer

    return _load_once("causal-lm", name, load)


def clear() -> None:
    """Forget loaded models (tests use it to check loading errors)."""
    with _lock:
        _loaded.clear()
