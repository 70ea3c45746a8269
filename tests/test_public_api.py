"""The public API: each package's ``__all__`` is complete, sorted, and every name resolves."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import nerve
import nerve.http
import nerve.llm

PACKAGES = [nerve, nerve.http, nerve.llm]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_sorted_and_resolves(package: ModuleType) -> None:
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert hasattr(package, name), name


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_lists_every_public_name(package: ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public | {"__version__"} == set(package.__all__) | {"__version__"}


def test_unknown_transport_suggests_the_nearest() -> None:
    with pytest.raises(nerve.ConfigurationError, match=r"did you mean memory://\?"):
        nerve.EventBus("memroy://")
    with pytest.raises(nerve.ConfigurationError, match="is not a URL"):
        nerve.EventBus("localhost")


@pytest.mark.parametrize(
    "url", ["redis://x:notaport", "nats://h:99999", "amqp://u:secret@h:abc/", "sqlite://h:x/a"]
)
def test_a_bad_port_is_a_configuration_error_without_the_password(url: str) -> None:
    # It was a ValueError from urllib deep in a client library: a traceback in the CLI.
    with pytest.raises(nerve.ConfigurationError, match="is not a valid URL") as caught:
        nerve.EventBus(url)
    assert "secret" not in str(caught.value)


def test_a_list_of_servers_is_a_valid_url() -> None:
    bus = nerve.EventBus("kafka://k1:9092,k2:9092?prefix=app", store="memory://")
    assert bus.url == "kafka://k1:9092,k2:9092?prefix=app"
