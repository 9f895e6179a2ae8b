"""Typed, validated reads from one TOML table, naming keys by their dotted path.

Each default is declared once, on the config dataclass a table becomes (its fields are named
like the TOML keys): a reader given that ``model`` falls back to the field's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from archiver.errors import ConfigError

T = TypeVar("T")


class TableReader:
    """Reads typed values out of one TOML table, naming keys by their dotted path."""

    def __init__(
        self, path: str, table: Mapping[str, Any], prefix: str = "", model: type | None = None
    ) -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.defaults = model_defaults(model) if model is not None else {}
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        """The value of ``name``: given, else ``default``, else the model's; else required."""
        self.used.add(name)
        if name not in self.table:
            if default is None:
                default = self.defaults.get(name)
            if default is None:
                raise self.fail(name, "is required")
            return default
        value = self.table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
        return value

    def positive(self, name: str, kind: type[T], default: T | None = None) -> T:
        value = self.get(name, kind, default)
        if not value > 0:  # type: ignore[operator]
            raise self.fail(name, f"must be greater than 0, not {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def sub(self, name: str, model: type | None = None) -> TableReader:
        """A reader for the sub-table ``name`` (empty if absent), defaults from ``model``."""
        table = self.get(name, dict, {})
        return TableReader(self.path, table, self.key(name) + ".", model)

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must not pass silently."""
        for name in self.table:
            if name not in self.used:
                raise self.fail(name, "is not a known key")


def model_defaults(model: type) -> dict[str, Any]:
    """The defaults a config dataclass declares, by field name."""
    defaults: dict[str, Any] = {}
    for spec in dataclasses.fields(model):
        if spec.default is not dataclasses.MISSING:
            defaults[spec.name] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            defaults[spec.name] = spec.default_factory()
    return defaults


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
