"""The Provence-style model: one MiniLM encoder (with LoRA adapters) and two heads.

``[CLS] query [SEP] passage [SEP]`` goes through the encoder once; the relevance head reads the [CLS] state
(the rerank score) and the keep head gives every token a keep logit (sequence labeling). Only the adapters and
heads are trained and saved (``adapter.safetensors`` + ``config.json``, about 2 MB), so the shipped
weights sit on top of the bundled, sha256-pinned MiniLM.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ragpress.models import resolve

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "provence-minilm"
DEFAULT_MODEL_NAME = "ragpress-provence-minilm"


@dataclass
class ProvenceConfig:
    base_model: str = "all-MiniLM-L6-v2"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    max_length: int = 512
    max_query_tokens: int = 64
    default_threshold: float = 0.1
    # Heads also read query/passage interaction features (see ProvenceModel); weights trained without them
    # (config.json lacking the key) load with the plain heads.
    interaction: bool = False


class ProvenceModel(nn.Module):
    """Encoder + relevance head + token keep head. ``forward`` returns (relevance logits, token logits).

    With ``config.interaction`` the heads also see how the query relates to the passage, not only the joint
    states: the relevance head reads [CLS] with the product and difference of the mean query and mean passage
    states plus their cosine, and the keep head reads each token's state with its product with the mean query
    state plus their cosine. The base model was trained so that cosine of mean states means relevance, so
    these features carry query dependence from the first step; learning it from [CLS] alone took more data
    and steps than a CPU run affords (runs stayed at the label prior)."""

    def __init__(self, config: ProvenceConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        # Input widths follow forward(): [CLS], product, difference, cosine; token, product, cosine.
        relevance_width = 3 * hidden + 1 if config.interaction else hidden
        keep_width = 2 * hidden + 1 if config.interaction else hidden
        # A pooler-like MLP: the base model was trained for mean pooling, so [CLS] needs a read-out.
        self.relevance_head = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(relevance_width, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        self.keep_head = nn.Sequential(nn.Dropout(0.1), nn.Linear(keep_width, 1))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if not self.config.interaction:
            return self.relevance_head(states[:, 0]).squeeze(-1), self.keep_head(states).squeeze(-1)
        present = attention_mask.bool()
        in_query = present & (token_type_ids == 0)
        in_query[:, 0] = False  # [CLS] is not part of the query
        query = nn.functional.normalize(_mean(states, in_query), dim=-1)
        passage = nn.functional.normalize(_mean(states, present & (token_type_ids == 1)), dim=-1)
        cosine = (query * passage).sum(-1, keepdim=True)
        relevance_in = torch.cat([states[:, 0], query * passage, (query - passage).abs(), cosine], dim=-1)
        tokens = nn.functional.normalize(states, dim=-1)
        token_cosine = (tokens * query[:, None, :]).sum(-1, keepdim=True)
        keep_in = torch.cat([states, tokens * query[:, None, :], token_cosine], dim=-1)
        return self.relevance_head(relevance_in).squeeze(-1), self.keep_head(keep_in).squeeze(-1)


def _mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _base_encoder(config: ProvenceConfig) -> tuple[nn.Module, object]:
    from transformers import AutoModel, AutoTokenizer

    path = resolve(config.base_model)
    # A private copy: the shared embedder instance must never see our adapters.
    encoder = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return encoder, tokenizer


def new_trainable(config: ProvenceConfig) -> tuple[ProvenceModel, object]:
    """A fresh model with LoRA adapters on the base encoder (only adapters and heads require grad)."""
    from peft import LoraConfig, get_peft_model

    encoder, tokenizer = _base_encoder(config)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.05,
        target_modules=config.lora_targets,
    )
    return ProvenceModel(config, get_peft_model(encoder, lora)), tokenizer


def trainable_state(model: ProvenceModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save(model: ProvenceModel, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(directory / ADAPTER_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(model.config), indent=2) + "\n")


def is_weights_dir(path: str | Path) -> bool:
    directory = Path(path).expanduser()
    return (directory / ADAPTER_FILE).is_file() and (directory / CONFIG_FILE).is_file()


def load(directory: str | Path, quantize: bool = False) -> tuple[ProvenceModel, object]:
    """Adapters and heads loaded onto the base encoder, merged for inference (no LoRA overhead), eval mode.

    ``quantize`` applies dynamic int8 quantization to the Linear layers (faster on CPU)."""
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    config = ProvenceConfig(**json.loads((directory / CONFIG_FILE).read_text()))
    model, tokenizer = new_trainable(config)
    missing = set(trainable_state(model)) - set(state := load_file(str(directory / ADAPTER_FILE)))
    if missing:
        raise ValueError(f"{directory} lacks weights for {sorted(missing)[:3]}...")
    model.load_state_dict(state, strict=False)
    model.encoder = model.encoder.merge_and_unload()
    model.eval()
    if quantize:
        model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return model, tokenizer


_lock = threading.Lock()
_cache: dict[tuple[str, bool], tuple[ProvenceModel, object]] = {}


def load_shared(directory: str | Path, quantize: bool = False) -> tuple[ProvenceModel, object]:
    """One loaded instance per (weights directory, quantize) per process, shared by components."""
    key = (str(Path(directory).expanduser().resolve()), quantize)
    with _lock:
        if key not in _cache:
            _cache[key] = load(directory, quantize)
        return _cache[key]
