"""The one topic matcher, as RabbitMQ matches binding keys: `*` one word, `#` zero or more."""

import itertools

import pytest

from events.topics import like_prefix, matches


@pytest.mark.parametrize("pattern,key,expected", [
    ("user.#", "user.registered", True), ("user.#", "user", True), ("#", "a.b.c", True), ("#", "a", True),
    ("user.*", "user.role_changed", True), ("user.*", "user.a.b", False), ("user.*", "user", False),
    ("order.#", "user.x", False), ("*.placed", "order.placed", True), ("*.placed", "placed", False),
    ("#.placed", "placed", True), ("#.placed", "a.b.placed", True), ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True), ("a.#.b", "a.x.y", False), ("scrape.requested", "scrape.requested", True),
    ("product.#", "productish.x", False),
])
def test_binding_patterns_match_routing_keys_as_rabbitmq_does(pattern, key, expected):
    assert matches(pattern, key) is expected


def _like(pattern: str, key: str) -> bool:
    prefix = pattern.removesuffix("%").replace(r"\_", "_").replace(r"\%", "%")
    return key.startswith(prefix) if pattern.endswith("%") else key == prefix


def test_the_sql_prefix_of_a_pattern_finds_every_key_the_pattern_matches():
    words = ["a", "b", "x_y", "*", "#"]
    keys = [".".join(k) for n in range(1, 4) for k in itertools.product(["a", "b", "x_y", "c"], repeat=n)]
    for n in range(1, 4):
        for pattern in map(".".join, itertools.product(words, repeat=n)):
            for key in keys:
                if matches(pattern, key):
                    assert _like(like_prefix(pattern), key), (pattern, key, like_prefix(pattern))
