"""FTS5's query language as PostgreSQL tsquery text: one language for both archives."""

from __future__ import annotations

import pytest

from archiver.store.tsquery import QuerySyntaxError, to_tsquery


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("refund", "'refund'"),
        ("refund policy", "('refund' & 'policy')"),
        ('"refund policy"', "('refund' <-> 'policy')"),
        ("kak*", "'kak':*"),
        ('"refund pol"*', "('refund' <-> 'pol':*)"),
        ("a OR b c", "('a' | ('b' & 'c'))"),
        ("a AND b OR c", "(('a' & 'b') | 'c')"),
        ("a NOT b", "('a' & !'b')"),
        ("(a OR b) NOT c", "(('a' | 'b') & !'c')"),
        ("Café", "'Café'"),
        ('"it""s"', "('it' <-> 's')"),
    ],
)
def test_fts5_queries_become_tsquery(query: str, expected: str) -> None:
    assert to_tsquery(query) == expected


@pytest.mark.parametrize(
    "query", ["don't", '"unterminated', "AND", "a OR", "(a", "a)", "  ", '""', "a NEAR b", "x:y"]
)
def test_invalid_queries_are_refused(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        to_tsquery(query)
