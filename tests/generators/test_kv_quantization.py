"""KV quantization: 4-bit states fit in a third of fp16's bytes (scales included) and decode closely."""

import pytest
import torch

from generators import kv_quantization
from generators.kv_quantization import dequantize, dequantize_into, quantize, stored_bytes

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


@pytest.fixture(params=[None, 32], ids=["key-range-per-chunk", "key-range-per-32-tokens"])
def key_group(request, monkeypatch):
    monkeypatch.setattr(kv_quantization, "KEY_GROUP", request.param)
    return request.param


@pytest.mark.parametrize("method", ["none", "fp16", "int8", "int4"])
def test_decoding_into_a_preallocated_view_matches_plain_decoding(method, key_group):
    keys, values = states(2)
    stored = quantize(keys, values, method)
    expected_keys, expected_values = dequantize(stored, method)
    out_keys = torch.zeros(LAYERS, HEADS, TOKENS + 10, DIM)
    out_values = torch.zeros(LAYERS, HEADS, TOKENS + 10, DIM)
    dequantize_into(stored, method, out_keys[:, :, 5 : 5 + TOKENS], out_values[:, :, 5 : 5 + TOKENS])
    assert torch.equal(out_keys[:, :, 5 : 5 + TOKENS], expected_keys)
    assert torch.allclose(out_values[:, :, 5 : 5 + TOKENS], expected_values)
    assert out_keys[:, :, :5].abs().sum() == 0


def test_unknown_method_is_refused():
    keys, values = states()
    with pytest.raises(ValueError, match="Unknown KV quantization"):
        quantize(keys, values, "int3")
