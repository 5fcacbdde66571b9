"""RabbitMQ topic matching, the one copy: which routing keys (event types) a binding pattern takes.
`*` is exactly one word, `#` zero or more; words are separated by dots."""

from functools import cache


@cache
def matches(pattern: str, key: str) -> bool:
    def go(p: tuple[str, ...], k: tuple[str, ...]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(go(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and go(p[1:], k[1:])
    return go(tuple(pattern.split(".")), tuple(key.split(".")))


def matches_any(patterns: tuple[str, ...] | list[str], key: str) -> bool:
    return any(matches(p, key) for p in patterns)


def like_prefix(pattern: str) -> str:
    """A SQL LIKE pattern that every key `pattern` matches also matches (a superset: filter the rows
    it finds with `matches`): the literal words before the first wildcard."""
    words = []
    for word in pattern.split("."):
        if word in ("*", "#"):
            break
        words.append(word)
    literal = ".".join(words).replace("\\", "\\\\").replace("_", r"\_").replace("%", r"\%")
    return literal + "%" if len(words) < len(pattern.split(".")) else literal
