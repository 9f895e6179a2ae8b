"""Search queries in SQLite FTS5's syntax, as PostgreSQL ``tsquery`` text.

``gws-archiver search`` takes one query language whichever the archive: words (``refund``),
phrases (``"refund policy"``), prefixes (``ref*``, ``"refund pol"*``), ``AND`` (also implied
between terms), ``OR``, ``NOT`` and parentheses, with FTS5's precedence (``NOT`` binds tightest,
then ``AND``, then ``OR``). Words are split as FTS5's unicode61 tokenizer splits them (letters
and digits; anything else separates), so a phrase becomes lexemes joined by ``<->``. What FTS5
has beyond that (``NEAR``, column filters, ``^``) is refused with a clear message.
"""

from __future__ import annotations

import re

from archiver.errors import StoreError

# A bareword is FTS5's: letters, digits, '_' and anything beyond ASCII, with an optional '*'.
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"]|"")*)"(\*?)|([\w\u0080-\U0010ffff]+\*?|\S))')
_WORD = re.compile(r"[^\W_]+")
_OPERATORS = {"AND", "OR", "NOT"}


class QuerySyntaxError(StoreError):
    """The query is not valid in the search language."""


def to_tsquery(query: str) -> str:
    """The ``to_tsquery`` text for an FTS5 query; raises QuerySyntaxError."""
    tokens = _tokens(query)
    parser = _Parser(tokens)
    text = parser.or_expression()
    if parser.position != len(tokens):
        raise QuerySyntaxError(f"unexpected {tokens[parser.position][1]!r}")
    return text


def _tokens(query: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: '(' ')' 'op' 'phrase' 'prefix' (a phrase ending in ``*``)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    query = query.rstrip()
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            raise QuerySyntaxError(f"unterminated string in {query!r}")
        position = match.end()
        opening, closing, quoted, star, bare = match.groups()
        if opening:
            tokens.append(("(", opening))
        elif closing:
            tokens.append((")", closing))
        elif quoted is not None:
            tokens.append(("prefix" if star else "phrase", quoted.replace('""', '"')))
        elif bare in _OPERATORS:
            tokens.append(("op", bare))
        elif bare == "NEAR":
            raise QuerySyntaxError("NEAR is not supported in searches of this archive")
        elif not (bare[0].isalnum() or bare[0] == "_" or ord(bare[0]) > 127):
            raise QuerySyntaxError(f"syntax error near {bare!r}")
        elif bare.endswith("*"):
            tokens.append(("prefix", bare[:-1]))
        else:
            tokens.append(("phrase", bare))
    if not tokens:
        raise QuerySyntaxError("the search query is empty")
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take_op(self, name: str) -> bool:
        if self._peek() == ("op", name):
            self.position += 1
            return True
        return False

    def or_expression(self) -> str:
        parts = [self.and_expression()]
        while self._take_op("OR"):
            parts.append(self.and_expression())
        return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"

    def and_expression(self) -> str:
        parts = [self.not_expression()]
        while True:
            explicit = self._take_op("AND")
            following = self._peek()
            if not explicit and (following is None or following[0] in (")", "op")):
                break
            parts.append(self.not_expression())
        return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"

    def not_expression(self) -> str:
        text = self.primary()
        while self._take_op("NOT"):
            text = f"({text} & !{self.primary()})"
        return text

    def primary(self) -> str:
        token = self._peek()
        if token is None:
            raise QuerySyntaxError("the query ends where a term was expected")
        kind, text = token
        self.position += 1
        if kind == "(":
            inner = self.or_expression()
            if self._peek() != (")", ")"):
                raise QuerySyntaxError("a '(' is not closed")
            self.position += 1
            return inner
        if kind in ("phrase", "prefix"):
            return _phrase(text, prefix=kind == "prefix")
        raise QuerySyntaxError(f"unexpected {text!r}")


def _phrase(text: str, *, prefix: bool) -> str:
    words = _WORD.findall(text)
    if not words:
        raise QuerySyntaxError(f"{text!r} holds no word to search for")
    lexemes = [f"'{word}'" for word in words]
    if prefix:
        lexemes[-1] += ":*"
    return lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")"
