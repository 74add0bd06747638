"""Where a component runs its model: ``auto`` takes a GPU when one is there, else the CPU.

Every model-bearing component takes a ``device`` init parameter (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), so
one pipeline YAML serves a laptop and a GPU server. On a GPU the weights load in bfloat16 where the card supports
it (float16 elsewhere); on the CPU they stay float32, which the KV states and their tests are calibrated for.
"""

from __future__ import annotations

import re
from typing import Any

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(?::\d{1,2})?")


def check_device(device: str) -> str:
    """``device`` as given, or ValueError saying what it takes; a GPU asked for where none is is refused now,
    not at the first query."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, not {device!r}.")
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} is not available on this machine; use auto or cpu.")
    return device


def resolve_device(device: str) -> str:
    """The concrete device for ``device`` (``auto`` -> ``cuda`` when available, else ``cpu``)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device: str) -> Any:
    """The weights' dtype on a concrete device."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
