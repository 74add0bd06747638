"""The serialized shape of a component is its YAML contract: pinned, and read back to the same component."""

from __future__ import annotations

import copy
from typing import Any


def assert_pinned(component: Any, init_parameters: dict[str, Any]) -> None:
    """``to_dict`` gives exactly the component's type and ``init_parameters`` (every one, nothing else)."""
    kind = type(component)
    assert component.to_dict() == {"type": f"{kind.__module__}.{kind.__name__}", "init_parameters": init_parameters}


def assert_restored(kind: type, init_parameters: dict[str, Any]) -> None:
    """``from_dict`` builds the component with each of these values, and it serializes back to them."""
    data = {"type": f"{kind.__module__}.{kind.__name__}", "init_parameters": init_parameters}
    restored = kind.from_dict(copy.deepcopy(data))  # some from_dict deserialize secrets in place
    assert all(getattr(restored, name) == value for name, value in init_parameters.items() if name != "api_key")
    assert restored.to_dict() == data
