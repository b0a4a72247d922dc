"""The custom rules of a model, in words: each rule's name is its method's name and its
message is the method's docstring, so the validator and the data dictionary say the same."""

from __future__ import annotations

import pandera.pandas as pa


def rule_texts(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """Custom check name -> its docstring (whitespace collapsed), inherited rules included."""
    texts: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        for name, value in vars(klass).items():
            is_check = hasattr(value, "__check_config__") or hasattr(
                value, "__dataframe_check_config__"
            )
            func = getattr(value, "__func__", None)
            if is_check and func is not None:
                texts[name] = " ".join((func.__doc__ or "").split())
    return texts
