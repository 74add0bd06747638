"""KV quantization: 4-bit states fit in a third of fp16's bytes (scales included) and decode closely."""

import pytest
import torch

from ragpress.generators import kv_quantization
from ragpress.generators.kv_quantization import dequantize, dequantize_into, quantize, stored_bytes

pytestmark = pytest.mark.unit

LAYERS, HEADS, TOKENS, DIM = 30, 3, 180, 64  # SmolLM2-135M's cache shape for a ~180-token chunk


def states(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(LAYERS, HEADS, TOKENS, DIM, generator=gen)
    keys[..., 5] *= 20  # an outlier channel, as real keys have: per-channel scales absorb it
    values = torch.randn(LAYERS, HEADS, TOKENS, DIM, generator=gen)
    return keys, values


def bytes_per_token(method: str) -> float:
    keys, values = states()
    return stored_bytes(quantize(keys, values, method)) / TOKENS


def test_bytes_per_token_shrink_with_bits_and_int4_is_under_a_third_of_fp16():
    assert bytes_per_token("none") == 46_080
    assert bytes_per_token("fp16") == 23_040
    assert bytes_per_token("int8") < 0.55 * bytes_per_token("fp16")
    assert bytes_per_token("int4") <= bytes_per_token("fp16") / 3


@pytest.mark.parametrize(("method", "tolerance"), [("fp16", 1e-2), ("int8", 0.02), ("int4", 0.35)])
def test_round_trip_error_is_bounded_relative_to_each_range(method, tolerance):
    keys, values = states(1)
    got_keys, got_values = dequantize(quantize(keys, values, method), method)
    key_range = keys.amax(dim=2, keepdim=True) - keys.amin(dim=2, keepdim=True)
    value_range = values.amax(dim=-1, keepdim=True) - values.amin(dim=-1, keepdim=True)
    assert ((got_keys - keys).abs() / key_range).max() <= tolerance
    assert ((got_values - values).abs() / value_range).max() <= tolerance


@pytest.mark.parametrize("tokens", [TOKENS, 176], ids=["last-key-group-padded", "key-groups-tile-the-chunk"])
@pytest.mark.parametrize("method", ["none", "fp16", "int8", "int4"])
def test_decoding_into_a_preallocated_view_matches_plain_decoding(method, tokens):
    keys, values = (s[:, :, :tokens] for s in states(2))
    stored = quantize(keys, values, method)
    expected_keys, expected_values = dequantize(stored, method)
    out_keys = torch.zeros(LAYERS, HEADS, tokens + 10, DIM)
    out_values = torch.zeros(LAYERS, HEADS, tokens + 10, DIM)
    dequantize_into(stored, method, out_keys[:, :, 5 : 5 + tokens], out_values[:, :, 5 : 5 + tokens])
    assert torch.equal(out_keys[:, :, 5 : 5 + tokens], expected_keys)
    assert torch.allclose(out_values[:, :, 5 : 5 + tokens], expected_values)
    assert out_keys[:, :, :5].abs().sum() == 0


def int4_key_bits(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return kv_quantization._unpack(quantize(keys, values, "int4")["k_bits"])


def test_int4_keys_decode_within_half_a_step_of_their_own_16_token_range_at_their_own_width():
    keys, values = states(3)
    keys[:, :, 7] *= 50  # one extreme token: it may only coarsen its own group's range
    got_keys, _ = dequantize(quantize(keys, values, "int4"), "int4")
    levels = (2.0 ** int4_key_bits(keys, values).float() - 1).unsqueeze(2)  # [L, H, 1, D]
    group = kv_quantization.SCHEMES["int4"].key_tokens
    for start in range(0, TOKENS, group):
        part = keys[:, :, start : start + group]
        spread = part.amax(dim=2, keepdim=True) - part.amin(dim=2, keepdim=True)
        # a channel without bits decodes to its range's midpoint: half its range away at most
        half_step = torch.where(levels == 0, spread / 2, spread / levels.clamp_min(1) / 2)
        error = (got_keys[:, :, start : start + group] - part).abs()
        # widened by the step code's rounding up (at most a 10th of an octave) and the fp16 zero point
        assert (error <= half_step * 2 ** (1 / 10) + 1e-2).all()


def test_int4_key_widths_average_at_most_four_bits_and_grow_with_a_channels_range():
    keys, values = states(5)
    keys[..., 9] *= 0.01  # a nearly constant channel
    bits = int4_key_bits(keys, values).float()
    assert bits.mean() <= 4.0
    assert (bits[..., 5] >= bits[..., 0] + 3).all()  # 20x the range: log2(20) ~ 4.3 more bits
    assert (bits[..., 9] == 0).all()  # 1/100 of the range: not worth a bit
    assert bits.max() <= kv_quantization.MAX_KEY_BITS


@pytest.mark.parametrize("tokens", [TOKENS, 16, 1])
def test_bit_planes_store_any_mix_of_widths_losslessly(tokens):
    gen = torch.Generator().manual_seed(6)
    bits = torch.randint(0, 9, (2, 3, 8), generator=gen, dtype=torch.uint8)
    groups = -(-tokens // 16)
    limit = (2 ** bits.long()).view(2, 3, 1, 1, 8)
    codes = (torch.randint(0, 256, (2, 3, groups, 16, 8), generator=gen) % limit).to(torch.uint8)
    packed = kv_quantization._pack_planes(codes, bits)
    assert packed.numel() == int(bits.long().sum()) * groups * 2  # exactly `width` bits per code
    assert torch.equal(kv_quantization._unpack_planes(packed, bits, codes.shape), codes)


def test_int4_keys_give_smaller_attention_logit_errors_than_four_bits_everywhere():
    keys, values = states(7)
    queries = torch.randn(LAYERS, HEADS, 4, DIM, generator=torch.Generator().manual_seed(8))
    got_keys, _ = dequantize(quantize(keys, values, "int4"), "int4")
    uniform = kv_quantization._quantize(kv_quantization._token_groups(keys, 16), 4, dim=-2)
    flat = torch.empty(LAYERS, HEADS, -(-TOKENS // 16), 16, DIM)
    kv_quantization._decode_into(uniform, 4, flat)
    uniform_keys = flat.flatten(2, 3)[:, :, :TOKENS]

    def logit_error(decoded: torch.Tensor) -> float:
        return float((queries @ (decoded - keys).transpose(-1, -2)).pow(2).mean())

    assert logit_error(got_keys) < 0.5 * logit_error(uniform_keys)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_step_codes_cover_constant_and_huge_ranges_without_clipping(method):
    keys, values = states(4)
    keys[0, 0, :, 3] = 2.5  # a constant channel
    values[1, 2, 9] *= 1e3  # a token with huge values
    got_keys, got_values = dequantize(quantize(keys, values, method), method)
    assert torch.allclose(got_keys[0, 0, :, 3], torch.full((TOKENS,), 2.5), atol=1e-3)
    huge = values[1, 2, 9]
    step = (huge.max() - huge.min()) / (255 if method == "int8" else 15)
    assert (got_values[1, 2, 9] - huge).abs().max() <= 0.55 * step  # rounded, not clipped


def test_unknown_method_is_refused():
    keys, values = states()
    with pytest.raises(ValueError, match="Unknown KV quantization"):
        quantize(keys, values, "int3")
