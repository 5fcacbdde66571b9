"""Text as people type it: which characters show nothing, and fields that must show something."""

import unicodedata

from events.errors import Invalid

# Characters that render as nothing but are not format characters (category Cf, which covers zero-width
# spaces and joiners, soft hyphens, byte-order marks, bidi controls and tags): variation selectors, the
# combining grapheme joiner, Hangul fillers, Mongolian free variation selectors.
_ALSO_INVISIBLE = {0x034F, 0x115F, 0x1160, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0,
                   *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def invisible(char: str) -> bool:
    return unicodedata.category(char) == "Cf" or ord(char) in _ALSO_INVISIBLE


def required(text: str, field: str) -> str:
    """`text` without surrounding whitespace; Invalid when nothing visible is left of it."""
    text = text.strip()
    if all(c.isspace() or invisible(c) for c in text):
        raise Invalid(field, "must not be empty or only spaces")
    return text
