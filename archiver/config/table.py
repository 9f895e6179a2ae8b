"""Typed, validated reads from one TOML table, naming keys by their dotted path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from archiver.errors import ConfigError

T = TypeVar("T")


class TableReader:
    """Reads typed values out of one TOML table, naming keys by their dotted path."""

    def __init__(self, path: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        self.used.add(name)
        if name not in self.table:
            if default is None:
                raise self.fail(name, "is required")
            return default
        value = self.table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
        return value

    def positive(self, name: str, kind: type[T], default: T) -> T:
        value = self.get(name, kind, default)
        if not value > 0:  # type: ignore[operator]
            raise self.fail(name, f"must be greater than 0, not {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def sub(self, name: str) -> TableReader:
        """A reader for the sub-table ``name`` (empty if absent)."""
        table = self.get(name, dict, {})
        return TableReader(self.path, table, self.key(name) + ".")

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must not pass silently."""
        for name in self.table:
            if name not in self.used:
                raise self.fail(name, "is not a known key")


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _kind_name(kind: type) -> str:
    return _KIND_NAMES.get(kind, kind.__name__)
