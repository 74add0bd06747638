"""A server's cost ceilings: what one query may ask a stage for, however it asks."""

from __future__ import annotations

import pytest

from ragpress.base.limits import ceilings, over_ceiling
from ragpress.base.settings import Settings

pytestmark = pytest.mark.unit


def test_the_ceilings_come_from_the_settings_and_bound_both_context_parameters() -> None:
    limits = ceilings(Settings(max_top_k=7, max_context_tokens_limit=900, max_new_tokens_limit=32))
    assert limits == {"top_k": 7, "token_budget": 900, "max_context_tokens": 900, "max_new_tokens": 32}


def test_a_value_above_its_ceiling_is_refused_naming_the_limit_and_the_setting() -> None:
    message = over_ceiling("max_new_tokens", 5000, {"max_new_tokens": 1024})
    assert message is not None
    assert "5000" in message and "1024" in message and "RAGPRESS_MAX_NEW_TOKENS_LIMIT" in message


@pytest.mark.parametrize(("parameter", "value"), [
    ("max_new_tokens", 1024),  # the ceiling itself is allowed
    ("max_new_tokens", 8),
    ("max_new_tokens", None),  # no value: the component's default applies
    ("max_new_tokens", "many"),  # wrong types are the component's to refuse, with its own message
    ("max_new_tokens", True),
    ("threshold", 10_000),  # parameters without a ceiling are not bounded here
])
def test_values_within_the_ceiling_or_not_bounded_pass(parameter: str, value: object) -> None:
    assert over_ceiling(parameter, value, {"max_new_tokens": 1024}) is None
