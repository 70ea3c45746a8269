"""Patterns: ``*`` is exactly one segment, ``#`` zero or more; matching is cached per type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerve.exceptions import SubscriptionError
from nerve.routing import Router, matches, validate_pattern

segment = st.sampled_from(["a", "b", "c", "ticket", "x-1", "_"])
types = st.lists(segment, min_size=1, max_size=6)
tokens = st.lists(st.one_of(segment, st.just("*"), st.just("#")), min_size=1, max_size=6)


def reference(pattern: list[str], words: list[str]) -> bool:
    """The definition, written as plainly as possible."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and reference(rest, words[1:])


@given(tokens, types)
def test_matching_agrees_with_the_definition(pattern: list[str], words: list[str]) -> None:
    assert matches(".".join(pattern), ".".join(words)) == reference(pattern, words)


@given(types, st.data())
def test_a_type_matches_patterns_made_from_it(words: list[str], data: st.DataObject) -> None:
    pattern = [data.draw(st.sampled_from([w, "*"])) for w in words]
    # collapse a random run into '#'
    i = data.draw(st.integers(0, len(pattern)))
    j = data.draw(st.integers(i, len(pattern)))
    pattern[i:j] = ["#"]
    assert matches(".".join(pattern), ".".join(words))


@given(types)
def test_star_is_exactly_one_segment(words: list[str]) -> None:
    assert matches(".".join("*" * len(words)), ".".join(words))
    assert not matches(".".join("*" * (len(words) + 1)), ".".join(words))
    assert matches("#", ".".join(words))


@pytest.mark.parametrize("bad", ["", "a..b", "A", "a.**", "a.b#", "a b", ".a"])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(SubscriptionError, match="invalid pattern"):
        validate_pattern(bad)


def test_router_caches_per_type_and_resets_on_add() -> None:
    router: Router[str] = Router()
    router.add("a.*", "wild")
    router.add("a.b", "exact")
    first = router.match("a.b")
    assert first == ("exact", "wild")
    assert router.match("a.b") is first  # cached: no matching on the hot path
    router.add("#", "all")
    assert router.match("a.b") == ("exact", "wild", "all")
    router.remove("wild")
    assert router.match("a.b") == ("exact", "all")
    assert set(router.targets()) == {"exact", "all"}
