"""Op-rule and layer-handler registries: refusing silent replacement."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prunekit.structured import OP_RULES, register_op


@pytest.fixture
def op_rules() -> Iterator[None]:
    """Restore the op-rule registry after the test."""
    items, meta = dict(OP_RULES._items), dict(OP_RULES._meta)
    yield
    OP_RULES._items.clear(), OP_RULES._items.update(items)
    OP_RULES._meta.clear(), OP_RULES._meta.update(meta)


def _rule(ctx, args, kwargs):  # noqa: ANN001, ANN202 - a stand-in rule
    return None


def test_register_op_refuses_an_existing_name_and_registers_nothing(op_rules: None) -> None:
    builtin = OP_RULES.get("add")
    with pytest.raises(ValueError, match=r"'add' \(prunekit\.structured\.ops\.pointwise\.elementwise\).*replace=True"):
        register_op("my_op", "add")(_rule)
    assert OP_RULES.get("add") is builtin and "my_op" not in OP_RULES


def test_register_op_adds_new_names_and_replaces_on_purpose(op_rules: None) -> None:
    register_op("my_op")(_rule)
    assert OP_RULES.get("my_op") is _rule
    with pytest.raises(ValueError, match="'my_op'"):
        register_op("my_op")(_rule)
    register_op("add", replace=True)(_rule)
    assert OP_RULES.get("add") is _rule
