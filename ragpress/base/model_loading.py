"""Load each model once per process and share it between pipelines and worker threads.

Components name models by registry name, Hugging Face id or directory; this module resolves the name
through the registry (never downloading) and keeps one loaded instance per (kind, name, device).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ragpress.base.devices import dtype_for, resolve_device
from ragpress.base.models import resolve

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], Any] = {}


def _quiet() -> None:
    """Loading progress bars are noise in a CLI's output and in server logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load_once(kind: str, name: str, device: str, loader: Any) -> Any:
    _quiet()
    key = (kind, name, resolve_device(device))
    with _lock:
        if key not in _loaded:
            _loaded[key] = loader(resolve(name), key[2])
        return _loaded[key]


def sentence_transformer(name: str, device: str = "auto") -> SentenceTransformer:
    """A SentenceTransformer on ``device`` (``ragpress.base.devices``), loaded from local files only."""

    def load(path: str, on: str) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device=on, local_files_only=True,
                                   model_kwargs={"torch_dtype": dtype_for(on)})

    return _load_once("sentence-transformer", name, device, load)


def causal_lm(name: str, device: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal language model (eval mode; float32 on the CPU) on ``device`` and its tokenizer, from local
    files only."""

    def load(path: str, on: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype_for(on), local_files_only=True).to(on)
        model.eval()
        return model, tokenizer

    return _load_once("causal-lm", name, device, load)


def tokenizer(name: str) -> PreTrainedTokenizerBase:
    """A model's tokenizer alone (its files only, no weights loaded), from local files only."""

    def load(path: str, _on: str) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)

    return _load_once("tokenizer", name, "cpu", load)


def clear() -> None:
    """Forget loaded models (tests use it to check loading errors)."""
    with _lock:
        _loaded.clear()
