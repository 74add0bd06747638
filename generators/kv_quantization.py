"""Quantize cached key/value states to 8 or 4 bits (KIVI / CacheGen style), scales included.

Keys have a few channels with large, consistent magnitudes (outlier channels), so they are quantized per
channel; values have no channel structure but vary per token, so they are quantized per token in groups of
channels. Both use asymmetric min/max ranges.

int4 is an average, not a width. A key channel's error reaches the attention logits in proportion to its
step, and channel ranges differ by orders of magnitude, so giving every channel 4 bits wastes them on narrow
channels while the wide ones dominate the error. int4 keys therefore get 0-8 bits per channel, chosen per
chunk so that all channels end up with about the same step (reverse water-filling on the log range),
averaging at most 4 bits; codes are stored as bit planes so any width packs without waste. Ranges are taken
per channel per ``key_tokens`` tokens, as KIVI does, so a few extreme tokens only coarsen their own group.
int4 values use 32-channel groups.

Each range stores its zero point in fp16 and its step as a one-byte log2 code (``SCALE_STEPS`` codes per
octave, rounded up so the range is always covered: at most 7% coarser than exact). Small groups are what
make int4 accurate, and a one-byte step is what keeps their bookkeeping inside a third of fp16's bytes.

Tensors are shaped ``[layers, kv_heads, tokens, head_dim]``. A quantized tensor is a dict of tensors
(``q``, ``scale``, ``zero``, and for int4 keys ``bits``) so it can be stored as-is; ``stored_bytes``
counts everything stored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

QUANTIZATIONS = ("none", "fp16", "int8", "int4")
# a third of fp16's bytes; its generated answers matched int8's within noise on the dev sets (docs/benchmarks.md)
DEFAULT_QUANTIZATION = "int4"
SCALE_STEPS = 10  # step codes per octave: consecutive steps differ by 2 ** (1 / 10), about 7%
SCALE_BIAS = 160  # code 0 is a step of 2 ** -16, code 255 one of about 724


MAX_KEY_BITS = 8


@dataclass(frozen=True)
class Scheme:
    bits: int  # value bits, and the average key bits
    key_tokens: int | None  # tokens per key range (None: one range per channel over the whole chunk)
    value_group: int  # channels per value range
    allocate_key_bits: bool = False  # per-channel key widths (then key_tokens must be a multiple of 8)


SCHEMES = {"int8": Scheme(8, None, 64), "int4": Scheme(4, 16, 32, allocate_key_bits=True)}


def _qmax(bits: int) -> int:
    return (1 << bits) - 1


def _encode_scale(scale: torch.Tensor) -> torch.Tensor:
    code = torch.ceil(torch.log2(scale) * SCALE_STEPS) + SCALE_BIAS
    return code.clamp_(0, 255).to(torch.uint8)


def _decode_scale(code: torch.Tensor) -> torch.Tensor:
    return torch.exp2((code.float() - SCALE_BIAS) / SCALE_STEPS)


def _quantize(x: torch.Tensor, bits: int, dim: int) -> dict[str, torch.Tensor]:
    """Asymmetric min/max quantization with the range taken over ``dim`` (kept as a size-1 dim)."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    code = _encode_scale(((high - low) / _qmax(bits)).clamp_min(1e-12))
    # quantize with the stored (rounded) step and zero point so decoding matches encoding exactly
    scale = _decode_scale(code)
    low = low.half()
    q = torch.round((x - low.float()) / scale).clamp_(0, _qmax(bits)).to(torch.uint8)
    return {"q": _pack(q) if bits == 4 else q, "scale": code, "zero": low}


def _decode_into(parts: dict[str, torch.Tensor], bits: int, target: torch.Tensor) -> None:
    """``q * step + zero`` written into ``target`` (shaped like the unpacked codes)."""
    target.copy_(_unpack(parts["q"]) if bits == 4 else parts["q"])
    target.mul_(_decode_scale(parts["scale"])).add_(parts["zero"].float())


# ---- per-channel key widths -----------------------------------------------------------------------
def allocate_key_bits(grouped_keys: torch.Tensor, average: float) -> torch.Tensor:
    """Bits per key channel (``[L, H, D]``, 0-8) averaging at most ``average`` over the chunk.

    A channel with range r and b bits adds error ~ r * 2**-b to every logit it feeds; for a fixed bit total
    the sum of squared errors is smallest when b = offset + log2(r), i.e. when all channels share one step.
    The offset is found by bisection so the rounded widths fit the budget."""
    ranges = grouped_keys.amax(dim=-2) - grouped_keys.amin(dim=-2)  # [L, H, groups, D]
    log_range = 0.5 * torch.log2(ranges.pow(2).mean(dim=2).clamp_min(1e-24))

    def widths(offset: float) -> torch.Tensor:
        return torch.round(log_range + offset).clamp_(0, MAX_KEY_BITS)

    low, high = -64.0 - float(log_range.max()), 64.0 - float(log_range.min())
    for _ in range(48):
        middle = (low + high) / 2
        low, high = (low, middle) if float(widths(middle).mean()) > average else (middle, high)
    return widths(low).to(torch.uint8)


def _quantize_allocated(grouped_keys: torch.Tensor, average: float) -> dict[str, torch.Tensor]:
    """Keys ``[L, H, groups, G, D]`` at per-channel widths; ranges over each group's G tokens."""
    bits = allocate_key_bits(grouped_keys, average)
    width = bits.view(*bits.shape[:2], 1, 1, -1).float()
    low = grouped_keys.amin(dim=-2, keepdim=True)
    high = grouped_keys.amax(dim=-2, keepdim=True)
    qmax = (2**width - 1).clamp_min(1)
    code = _encode_scale(((high - low) / qmax).clamp_min(1e-12))
    # a channel with no bits decodes to its range's midpoint, the smallest worst-case error
    zero = torch.where(width == 0, (low + high) / 2, low).half()
    q = torch.round((grouped_keys - zero.float()) / _decode_scale(code)).clamp_(min=0)
    q = torch.minimum(q, qmax).to(torch.uint8)
    return {"q": _pack_planes(q, bits), "scale": code, "zero": zero, "bits": _pack(bits)}


def _decode_keys_into(stored: dict[str, torch.Tensor], scheme: Scheme, target: torch.Tensor) -> None:
    """Keys into ``target`` shaped ``[L, H, groups, G, D]``."""
    if not scheme.allocate_key_bits:
        _decode_into(_parts(stored, "k"), scheme.bits, target)
        return
    target.copy_(_unpack_planes(stored["k_q"], _unpack(stored["k_bits"]), target.shape))
    target.mul_(_decode_scale(stored["k_scale"])).add_(stored["k_zero"].float())


_BYTE_SHIFTS = torch.arange(8, dtype=torch.uint8)  # bit i of a packed byte holds the i-th of 8 tokens
# byte value -> its 8 bits placed in the low bit of 8 byte lanes of an int64
_SPREAD = ((torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1).mul(2 ** (8 * torch.arange(8))).sum(1)


def _pack_planes(q: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Codes ``[L, H, groups, G, D]`` as bit planes, 8 tokens per byte, keeping only the planes below each
    channel's width (a 1-D tensor: a 3-bit channel costs exactly 3 bits per token)."""
    layers, heads, groups, group, dim = q.shape
    by_channel = q.permute(0, 1, 4, 2, 3).reshape(layers, heads, dim, groups, group // 8, 8)
    packed = torch.empty(MAX_KEY_BITS, layers, heads, dim, groups, group // 8, dtype=torch.uint8)
    for plane in range(MAX_KEY_BITS):
        torch.sum(((by_channel >> plane) & 1) << _BYTE_SHIFTS, dim=-1, dtype=torch.uint8, out=packed[plane])
    return packed[_plane_mask(bits)].flatten()


def _unpack_planes(stored: torch.Tensor, bits: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    layers, heads, groups, group, dim = shape
    packed = torch.zeros(MAX_KEY_BITS, layers, heads, dim, groups, group // 8, dtype=torch.uint8)
    packed[_plane_mask(bits)] = stored.view(-1, groups, group // 8)
    # each packed byte spreads into one int64 holding its 8 tokens' bits in 8 byte lanes, so the planes
    # combine 8 tokens at a time; the lanes are then read back as bytes (lane i = token i)
    lanes = torch.zeros(layers, heads, dim, groups, group // 8, dtype=torch.int64)
    for plane in range(int(bits.max()) if bits.numel() else 0):
        lanes |= _SPREAD[packed[plane].long()] << plane
    codes = lanes.view(torch.uint8).view(layers, heads, dim, groups, group // 8, 8)
    if sys.byteorder == "big":
        codes = codes.flip(-1)
    return codes.flatten(-2).permute(0, 1, 3, 4, 2)  # [L, H, groups, G, D]


def _plane_mask(bits: torch.Tensor) -> torch.Tensor:
    """[8, L, H, D]: which bit planes each channel stores."""
    return torch.arange(MAX_KEY_BITS).view(-1, 1, 1, 1) < bits.unsqueeze(0)


def _pack(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last dimension (which must be even)."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).contiguous()


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def _grouped(values: torch.Tensor, group: int) -> torch.Tensor:
    *lead, dim = values.shape
    group = group if dim % group == 0 else dim
    return values.reshape(*lead, dim // group, group)


def _token_groups(keys: torch.Tensor, group: int | None) -> torch.Tensor:
    """``[L, H, T, D]`` -> ``[L, H, groups, G, D]``, padding the last group by repeating the last token."""
    layers, heads, tokens, dim = keys.shape
    group = group or tokens
    padded = -(-tokens // group) * group
    if padded > tokens:
        keys = torch.cat([keys, keys[:, :, -1:].expand(layers, heads, padded - tokens, dim)], dim=2)
    return keys.reshape(layers, heads, padded // group, group, dim)


def _parts(stored: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {part: stored[f"{name}_{part}"] for part in ("q", "scale", "zero")}


def quantize(keys: torch.Tensor, values: torch.Tensor, method: str) -> dict[str, torch.Tensor]:
    """The stored tensors for one chunk's states under ``method`` (see ``QUANTIZATIONS``)."""
    if method not in QUANTIZATIONS:
        raise ValueError(f"Unknown KV quantization {method!r}; expected one of {QUANTIZATIONS}.")
    if method == "none":
        return {"k": keys.float().contiguous(), "v": values.float().contiguous()}
    if method == "fp16":
        return {"k": keys.half().contiguous(), "v": values.half().contiguous()}
    scheme = SCHEMES[method]
    # keys: one range per (layer, head, channel, group of tokens); values: per (layer, head, token, group)
    grouped_keys = _token_groups(keys.float(), scheme.key_tokens)
    if scheme.allocate_key_bits:
        # the padded tokens of the last group are stored too: spend the bits of the real tokens only
        padded = grouped_keys.shape[2] * grouped_keys.shape[3]
        k = _quantize_allocated(grouped_keys, scheme.bits * keys.shape[2] / padded)
    else:
        k = _quantize(grouped_keys, scheme.bits, dim=-2)
    v = _quantize(_grouped(values.float(), scheme.value_group), scheme.bits, dim=-1)
    return {f"k_{name}": t for name, t in k.items()} | {f"v_{name}": t for name, t in v.items()}


def dequantize(stored: dict[str, torch.Tensor], method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 keys and values back from ``quantize``'s output."""
    if method in ("none", "fp16"):
        return stored["k"].float(), stored["v"].float()
    layers, heads, tokens = stored["v_q"].shape[:3]  # values are never padded: they give the true length
    dim = stored["k_zero"].shape[-1]
    keys, values = torch.empty(layers, heads, tokens, dim), torch.empty(layers, heads, tokens, dim)
    dequantize_into(stored, method, keys, values)
    return keys, values


def dequantize_into(stored: dict[str, torch.Tensor], method: str, keys: torch.Tensor,
                    values: torch.Tensor) -> None:
    """Write fp32 keys and values into preallocated views (no intermediate full-size copies)."""
    if method in ("none", "fp16"):
        keys.copy_(stored["k"])
        values.copy_(stored["v"])
        return
    scheme = SCHEMES[method]
    value_codes = stored["v_q"].shape[-1] * (2 if scheme.bits == 4 else 1)
    _decode_into(_parts(stored, "v"), scheme.bits, values.unflatten(-1, (-1, value_codes)))
    groups = stored["k_zero"].shape[2]
    group = scheme.key_tokens or keys.shape[2]
    if groups * group == keys.shape[2]:  # groups tile the chunk exactly: decode straight into the view
        _decode_keys_into(stored, scheme, keys.unflatten(2, (groups, group)))
        return
    padded = torch.empty(*keys.shape[:2], groups, group, keys.shape[3])  # the last group was padded
    _decode_keys_into(stored, scheme, padded)
    keys.copy_(padded.flatten(2, 3)[:, :, : keys.shape[2]])


def stored_bytes(stored: dict[str, torch.Tensor]) -> int:
    """Bytes of all stored tensors, scales and zero points included."""
    return sum(t.numel() * t.element_size() for t in stored.values())
