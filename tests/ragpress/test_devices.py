"""Where a component runs: auto takes a GPU when present, else the CPU; a device the machine lacks is refused."""

from __future__ import annotations

import pytest
import torch

from ragpress.base.devices import check_device, dtype_for, resolve_device

pytestmark = pytest.mark.unit


def test_auto_resolves_to_the_gpu_when_there_is_one_else_the_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "CPU", "cuda:123"])
def test_a_malformed_device_is_refused_saying_what_it_takes(device: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_gpu_asked_for_where_none_is_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not available"):
        check_device("cuda:0")


def test_weights_stay_float32_on_the_cpu() -> None:
    assert dtype_for("cpu") == torch.float32
