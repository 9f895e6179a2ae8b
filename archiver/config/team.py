"""Reading ``[team]``: the supervisor account of team mode and the agents it monitors."""

from __future__ import annotations

from collections.abc import Mapping

from archiver.config.model import TEAM_EXISTING, Secret, TeamConfig
from archiver.config.table import TableReader


def parse_team(reader: TableReader, env: Mapping[str, str]) -> TeamConfig | None:
    """The ``[team]`` table, or None when it is absent (team mode off)."""
    if not reader.table:
        return None
    username = reader.get("username", str)
    if not username:
        raise reader.fail("username", "must not be empty")
    agents = _names(reader, "agents")
    agent_ids = _names(reader, "agent_ids")
    all_agents = reader.get("all_agents", bool)
    if sum((bool(agents), bool(agent_ids), all_agents)) != 1:
        raise reader.fail(
            "agents", "set exactly one of agents (user names), agent_ids, or all_agents = true"
        )
    if username in agents:
        raise reader.fail("agents", f"lists the supervisor {username!r} itself")
    nickname = reader.get("nickname", str, "") if "nickname" in reader.table else None
    config = TeamConfig(
        username=username,
        password=password(reader, env),
        agents=agents,
        agent_ids=agent_ids,
        all_agents=all_agents,
        nickname=nickname or None,
        existing=reader.choice("existing", TEAM_EXISTING),
        accept_invited=reader.get("accept_invited", bool),
        cancel_on_exit=reader.get("cancel_on_exit", bool),
        check_s=reader.positive("check_s", float),
        retry_min_s=reader.positive("retry_min_s", float),
        retry_max_s=reader.positive("retry_max_s", float),
        exit_timeout_s=reader.positive("exit_timeout_s", float),
    )
    if config.retry_max_s < config.retry_min_s:
        raise reader.fail("retry_max_s", "must not be less than retry_min_s")
    reader.finish()
    return config


def password(reader: TableReader, env: Mapping[str, str]) -> Secret:
    """``password_env`` (the variable's value) or ``password``: exactly one of them."""
    has_inline, has_env = "password" in reader.table, "password_env" in reader.table
    if has_inline == has_env:
        raise reader.fail("password_env", "set exactly one of password_env or password")
    if has_inline:
        return Secret(reader.get("password", str))
    variable = reader.get("password_env", str)
    if variable not in env:
        raise reader.fail("password_env", f"environment variable {variable} is not set")
    return Secret(env[variable])


def _names(reader: TableReader, name: str) -> tuple[str, ...]:
    values = reader.get(name, list, [])
    if not all(isinstance(value, str) and value for value in values):
        raise reader.fail(name, "must be an array of non-empty strings")
    if len(set(values)) != len(values):
        raise reader.fail(name, "names someone twice")
    return tuple(values)
