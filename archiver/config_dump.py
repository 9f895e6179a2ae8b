"""The effective configuration as plain data and as TOML text, secrets masked, and its digest.

``gws-archiver config check`` prints it; the ``runs`` table keeps its digest, so two runs with the
same digest ran with the same settings (secrets are masked before hashing, so they never leave a
trace in the archive).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archiver.config import Config, Secret
from archiver.config.model import redact_url

MASK = "**********"
URL_FIELDS = frozenset({"url", "base_url"})
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def effective_config(config: Config) -> dict[str, Any]:
    """Every table and key with the value in force; secrets masked, unset (None) values left out."""
    plain = _plain(config)
    assert isinstance(plain, dict)
    plain.pop("source", None)
    return plain


def config_digest(config: Config) -> str:
    """A short, stable digest of the effective configuration (secrets masked first)."""
    canonical = json.dumps(effective_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_toml(table: Mapping[str, Any]) -> str:
    """TOML text for plain data: scalars first, then sub-tables, then arrays of tables."""
    lines: list[str] = []
    _emit_table(lines, (), table)
    return "\n".join(lines).strip() + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: _plain_field(item.name, getattr(value, item.name))
            for item in dataclasses.fields(value)
            if getattr(value, item.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(item) for item in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _plain_field(name: str, value: Any) -> Any:
    """A URL field is printed with its credentials masked (userinfo, query tokens)."""
    if name in URL_FIELDS and isinstance(value, str):
        return redact_url(value)
    return _plain(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines.extend(["", f"[{_dotted((*path, key))}]"])
            _emit_table(lines, (*path, key), value)
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{_dotted((*path, key))}]]"])
                _emit_table(lines, (*path, key), item)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(part) for part in path)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inline = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{" + inline + "}"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)
