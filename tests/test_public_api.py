"""The public API: ``nerve.__all__`` is complete, sorted, and every name resolves."""

from __future__ import annotations

import inspect

import pytest

import nerve


def test_all_is_sorted_and_resolves() -> None:
    assert nerve.__all__ == sorted(nerve.__all__)
    for name in nerve.__all__:
        assert hasattr(nerve, name), name


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(nerve).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public | {"__version__"} == set(nerve.__all__)


def test_unknown_transport_suggests_the_nearest() -> None:
    with pytest.raises(nerve.ConfigurationError, match=r"did you mean memory://\?"):
        nerve.EventBus("memroy://")
    with pytest.raises(nerve.ConfigurationError, match="is not a URL"):
        nerve.EventBus("localhost")
