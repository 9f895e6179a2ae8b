"""Text from GWS made safe to show: customers write anything, terminals and browsers obey some.

:func:`printable` escapes what a terminal could take for layout, cursor movement or reordering;
:func:`escape_html` does the same for HTML and escapes markup (quotes too), keeping newlines.
"""

from __future__ import annotations

import html
import re

# What a terminal (or a reader) could take for layout, cursor movement or reordering: C0, DEL,
# C1 (with NEL), the Unicode line and paragraph separators, and the bidi embeddings, overrides
# and isolates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_OR_NEWLINE_KEPT = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` with every control, line-separator and bidi character replaced by its escape.

    Tab, newline and CR become ``\\t``, ``\\n``, ``\\r``; other characters below U+0100 become
    ``\\xHH`` (``\\x1b``, ``\\x85``), the rest ``\\uHHHH`` (``\\u2028``, ``\\u202e``).
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_html(text: str) -> str:
    """HTML-escaped (quotes too, so safe in attributes), with newlines kept for ``pre-wrap``."""
    kept = text.replace("\r\n", "\n")
    return html.escape(_UNPRINTABLE_OR_NEWLINE_KEPT.sub(_escape, kept), quote=True)
