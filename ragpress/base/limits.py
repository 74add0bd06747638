"""Per-deployment ceilings on what one query may cost.

A query's cost grows with how many passages a stage returns (``top_k``), how much context is assembled and read
(``token_budget``, ``max_context_tokens``) and how many tokens the generator writes (``max_new_tokens``). A
request's ``params`` and a saved pipeline's init parameters are held to the same ceilings, so neither an API
caller nor a tenant's YAML can make one query arbitrarily expensive. Whoever runs the server sets them
(``RAGPRESS_MAX_TOP_K``, ``RAGPRESS_MAX_CONTEXT_TOKENS_LIMIT``, ``RAGPRESS_MAX_NEW_TOKENS_LIMIT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragpress.base.settings import Settings

# Which setting bounds each component parameter.
CEILING_SETTINGS = {
    "top_k": "max_top_k",
    "token_budget": "max_context_tokens_limit",
    "max_context_tokens": "max_context_tokens_limit",
    "max_new_tokens": "max_new_tokens_limit",
}


def ceilings(settings: Settings) -> dict[str, int]:
    """The highest value this server accepts for each bounded parameter."""
    return {parameter: getattr(settings, name) for parameter, name in CEILING_SETTINGS.items()}


def over_ceiling(parameter: str, value: Any, limits: Mapping[str, int]) -> str | None:
    """Why ``value`` is too large for ``parameter`` here, or None. Values of other types are left to the
    component, whose own check says what it takes."""
    limit = limits.get(parameter)
    if limit is None or isinstance(value, bool) or not isinstance(value, int | float) or value <= limit:
        return None
    setting = "RAGPRESS_" + CEILING_SETTINGS[parameter].upper()
    return f"{value} is above this server's limit of {limit} for '{parameter}' (its operator sets {setting})."
