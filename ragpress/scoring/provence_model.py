"""The Provence-style model: one MiniLM encoder (with LoRA adapters), two heads, and a cosine fusion.

``[CLS] query [SEP] passage [SEP]`` goes through the encoder once and gives both outputs: a relevance logit
per passage (the rerank score) and a keep logit per token (sequence labeling). Only the adapters, heads and
fusion scalars are trained and saved (``adapter.safetensors`` + ``config.json``, about 3 MB), so the shipped
weights sit on top of the bundled, sha256-pinned MiniLM. The pruner and the reranker's Provence mode load the
same instance (``load_shared``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ragpress.base.devices import resolve_device
from ragpress.base.models import resolve

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
    # Share of the query's best sentence score a sentence needs (see ragpress.training.pruner_calibration); when
    # set, it is the pruner's default rule instead of the absolute default_threshold.
    default_relative_threshold: float | None = None
    # Weights and default threshold of ragpress.pruners.sentence_fusion.SentenceFusion, fitted for these weights by
    # ragpress.training.fit_sentence_fusion; when present, the pruner keeps sentences by that fused score by
    # default.
    sentence_fusion: dict | None = None
    # Query isolation, interaction features and cosine fusion (see ProvenceModel); False: the plain heads.
    interaction: bool = True


class ProvenceModel(nn.Module):
    """Encoder + relevance head + token keep head. ``forward`` returns (relevance logits, token logits).

    With ``config.interaction`` (the shipped design) the query attends only to itself, so its mean state is
    the bi-encoder's query embedding, while passage tokens attend to the query too. The relevance head reads
    the passage mean with its product and difference to the query and their cosine; the keep head reads each
    token's state, its product with the query and their cosine; ``CosineFusion`` adds both heads to affine
    maps of those cosines, so training learns corrections to a retrieval-grade starting point. Without it
    (the first design, kept as an ablation) the heads read the joint states alone; its CPU-sized runs
    stayed at the label prior."""

    def __init__(self, config: ProvenceConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        # Input widths follow forward(): [CLS] (plain) or the passage mean, product, difference, cosine;
        # token, product, cosine.
        relevance_width = 3 * hidden + 1 if config.interaction else hidden
        keep_width = 2 * hidden + 1 if config.interaction else hidden
        # A pooler-like MLP: the base model was trained for mean pooling, so [CLS] needs a read-out.
        self.relevance_head = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(relevance_width, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        self.keep_head = nn.Sequential(nn.Dropout(0.1), nn.Linear(keep_width, 1))
        if config.interaction:
            self.fusion = CosineFusion()
            # The heads start as no-ops, so a fresh model scores exactly the fused cosines.
            for head in (self.relevance_head, self.keep_head):
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        sentence_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sentence_ids`` (sentence index per token, -1 outside sentences) lets each token's keep logit
        read how close its whole sentence is to the query; without it that term is left out."""
        if not self.config.interaction:
            states = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return self.relevance_head(states[:, 0]).squeeze(-1), self.keep_head(states).squeeze(-1)
        present = attention_mask.bool()
        in_query = present & (token_type_ids == 0)
        states = self.encode(input_ids, attention_mask, token_type_ids)
        query = nn.functional.normalize(_mean(states, in_query), dim=-1)
        passage_mean = _mean(states, present & (token_type_ids == 1))
        passage = nn.functional.normalize(passage_mean, dim=-1)
        cosine = (query * passage).sum(-1, keepdim=True)
        relevance_in = torch.cat([passage_mean, query * passage, (query - passage).abs(), cosine], dim=-1)
        tokens = nn.functional.normalize(states, dim=-1)
        token_cosine = (tokens * query[:, None, :]).sum(-1, keepdim=True)
        keep_in = torch.cat([states, tokens * query[:, None, :], token_cosine], dim=-1)
        relevance = self.relevance_head(relevance_in).squeeze(-1)
        keep = self.keep_head(keep_in).squeeze(-1)
        if sentence_ids is not None:
            # How much closer to the query a token's sentence is than its passage as a whole.
            keep = keep + self.fusion.sentence_scale * (sentence_cosines(states, query, sentence_ids) - cosine)
        return self.fusion(relevance, keep, cosine.squeeze(-1), token_cosine.squeeze(-1))

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        """Token states of ``[CLS] query [SEP] passage [SEP]``, the query isolated from the passage."""
        present = attention_mask.bool()
        mask = query_isolating_mask(present, present & (token_type_ids == 0), self.fusion.relevance_scale.dtype)
        return self.encoder(
            input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids
        ).last_hidden_state


def sentence_cosines(states: torch.Tensor, query: torch.Tensor, sentence_ids: torch.Tensor) -> torch.Tensor:
    """Per token, the cosine between the query and the mean state of the token's sentence (its cosine to
    the query when it lies outside every sentence)."""
    members = nn.functional.one_hot(sentence_ids.clamp(min=0), int(sentence_ids.max()) + 2)[..., :-1]
    members = members * (sentence_ids >= 0)[..., None]  # (batch, length, sentences)
    sums = members.transpose(1, 2).to(states.dtype) @ states  # (batch, sentences, hidden)
    cosines = (nn.functional.normalize(sums, dim=-1) * query[:, None, :]).sum(-1)
    per_token = cosines.gather(1, sentence_ids.clamp(min=0))
    alone = (nn.functional.normalize(states, dim=-1) * query[:, None, :]).sum(-1)
    return torch.where(sentence_ids >= 0, per_token, alone)


def query_isolating_mask(present: torch.Tensor, in_query: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive attention mask (batch, 1, length, length): ``[CLS] query [SEP]`` attends only to itself,
    passage tokens attend to everything present.

    The query's states are then exactly the bi-encoder's embedding of the query alone, so the cosine with
    the passage starts close to retrieval's own score (65 nDCG@10 on SciFact dev vs 55 with full joint
    attention, where both means share context), while passage tokens still read the query, which the
    keep head needs."""
    allowed = present[:, None, :] & (~in_query[:, :, None] | in_query[:, None, :])
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]


class CosineFusion(nn.Module):
    """Adds the heads' learned corrections to affine maps of the cosines the base model was trained on.

    The base MiniLM is a bi-encoder: the cosine of mean query and passage states already ranks passages
    well, so the relevance logit is ``scale * cosine + bias + head`` and training learns a residual instead
    of relevance from scratch (runs that had to learn it from [CLS] alone ended at the label prior). A
    token's keep logit adds its own cosine to the query and the passage's relevance logit, so every token
    of a passage judged irrelevant is dropped with it (most of the removed context comes from there)."""

    def __init__(self) -> None:
        super().__init__()
        # These scalars train too, with a larger learning rate (see ragpress.training.pruner_training).
        # Starting values put a fresh model's losses below the label prior on training windows.
        self.relevance_scale = nn.Parameter(torch.tensor(20.0))
        self.relevance_bias = nn.Parameter(torch.tensor(-14.0))
        self.token_scale = nn.Parameter(torch.tensor(1.0))
        self.token_bias = nn.Parameter(torch.tensor(-4.0))
        self.from_relevance = nn.Parameter(torch.tensor(1.0))
        self.sentence_scale = nn.Parameter(torch.tensor(10.0))

    def forward(
        self, relevance: torch.Tensor, keep: torch.Tensor, cosine: torch.Tensor, token_cosine: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        relevance = relevance + self.relevance_scale * cosine + self.relevance_bias
        # Detached: most tokens of a relevant passage are labelled "drop", and that must not teach the
        # relevance score that the passage is irrelevant.
        passage = self.from_relevance * relevance.detach()[:, None]
        keep = keep + self.token_scale * token_cosine + self.token_bias + passage
        return relevance, keep


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


def weights_path(model: str) -> Path:
    """The weights directory for ``model``: the shipped adapter's name or a directory holding one."""
    if model == DEFAULT_MODEL_NAME:
        return DEFAULT_WEIGHTS
    if is_weights_dir(model):
        return Path(model).expanduser()
    raise ValueError(
        f"model {model!r} is neither {DEFAULT_MODEL_NAME!r} nor a directory with "
        "adapter.safetensors + config.json"
    )


def load(directory: str | Path, quantize: bool = False, device: str = "cpu") -> tuple[ProvenceModel, object]:
    """Adapters and heads loaded onto the base encoder, merged for inference (no LoRA overhead), eval mode, on
    the concrete ``device``.

    ``quantize`` applies dynamic int8 quantization to the Linear layers (faster on CPU; CPU only)."""
    if quantize and device != "cpu":
        raise ValueError("quantize is dynamic int8 quantization, which runs on the CPU only; use device cpu.")
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
    return model.to(device), tokenizer


_lock = threading.Lock()
_cache: dict[tuple[str, bool, str], tuple[ProvenceModel, object]] = {}


def load_shared(directory: str | Path, quantize: bool = False, device: str = "auto") -> tuple[ProvenceModel, object]:
    """One loaded instance per (weights directory, quantize, device) per process, shared by components."""
    key = (str(Path(directory).expanduser().resolve()), quantize, resolve_device(device))
    with _lock:
        if key not in _cache:
            _cache[key] = load(directory, quantize, key[2])
        return _cache[key]
