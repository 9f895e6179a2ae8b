"""The ``[server]`` section: where the local HTTP endpoint listens, and its token."""

from __future__ import annotations

from collections.abc import Mapping

from archiver.config.model import Secret, ServerConfig, is_loopback, split_listen
from archiver.config.table import TableReader


def parse_server(reader: TableReader, env: Mapping[str, str]) -> ServerConfig:
    """The [server] table; a non-loopback listen address needs a token."""
    listen = reader.get("listen", str, "") or None
    host = ""
    if listen is not None:
        try:
            host, _ = split_listen(listen)
        except ValueError as exc:
            raise reader.fail("listen", str(exc)) from None
    if "token" in reader.table and "token_env" in reader.table:
        raise reader.fail("token_env", "set at most one of token_env or token")
    token: Secret | None = None
    if "token_env" in reader.table:
        variable = reader.get("token_env", str)
        if not env.get(variable):
            raise reader.fail("token_env", f"environment variable {variable} is not set")
        token = Secret(env[variable])
    elif "token" in reader.table:
        value = reader.get("token", str)
        if not value:
            raise reader.fail("token", "must not be empty")
        token = Secret(value)
    if listen is not None and token is None and not is_loopback(host):
        raise reader.fail(
            "listen",
            f"binds to {host}, which is not loopback: set server.token or server.token_env",
        )
    config = ServerConfig(
        listen=listen,
        token=token,
        keepalive_s=reader.positive("keepalive_s", float),
        ready_window_s=reader.positive("ready_window_s", float),
        allowed_hosts=_host_names(reader),
    )
    reader.finish()
    return config


def _host_names(reader: TableReader) -> tuple[str, ...]:
    names = reader.get("allowed_hosts", list)
    for position, name in enumerate(names):
        if not isinstance(name, str) or not name or "/" in name or ":" in name.strip("[]"):
            raise reader.fail(f"allowed_hosts[{position}]", "must be a host name, without a port")
    return tuple(name.lower().strip("[]") for name in names)
