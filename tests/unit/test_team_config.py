"""Team mode's configuration and its read-only guarantee, checked before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import load_config
from archiver.config_dump import effective_config, render_toml
from archiver.errors import ForbiddenOperationError
from archiver.gws.client import ALLOWED_OPERATIONS, check_operation

TEAM_ONLY = """
[gws]
base_url = "http://127.0.0.1:8090"
[team]
username = "supervisor1"
password_env = "SUPERVISOR_PASSWORD"
agents = ["agent1", "agent2"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_team_alone_needs_no_agent_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One supervisor stands in for every agent's password: [[gws.accounts]] may be absent."""
    monkeypatch.setenv("SUPERVISOR_PASSWORD", "sup3r-secret")
    config = load_config(write(tmp_path, TEAM_ONLY))
    assert config.team is not None
    assert config.team.agents == ("agent1", "agent2")
    assert config.team.existing == "report"
    assert config.team.cancel_on_exit is True
    assert [account.username for account in config.accounts] == ["supervisor1"]
    shown = render_toml(effective_config(config))
    assert "[team]" in shown
    assert "sup3r-secret" not in shown


def test_team_combines_with_agent_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured agents are read through as before; the supervisor comes last."""
    monkeypatch.setenv("SUPERVISOR_PASSWORD", "x")
    text = TEAM_ONLY.replace(
        "[team]", '[[gws.accounts]]\nusername = "agent9"\npassword = "p"\n[team]'
    )
    config = load_config(write(tmp_path, text))
    assert [account.username for account in config.accounts] == ["agent9", "supervisor1"]


BAD_TEAMS = [
    (TEAM_ONLY.replace('agents = ["agent1", "agent2"]', ""), "team.agents: set exactly one"),
    (TEAM_ONLY + "all_agents = true\n", "team.agents: set exactly one"),
    (TEAM_ONLY.replace('"agent2"', '"agent1"'), "team.agents: names someone twice"),
    (TEAM_ONLY.replace('"agent2"', '"supervisor1"'), "team.agents: lists the supervisor"),
    (TEAM_ONLY + 'existing = "barge"\n', "team.existing: must be one of report, intrude"),
    (TEAM_ONLY + "check_s = 0\n", "team.check_s: must be greater than 0"),
    (TEAM_ONLY + 'mode = "Coach"\n', "team.mode: is not a known key"),
    (
        TEAM_ONLY.replace('password_env = "SUPERVISOR_PASSWORD"', 'password_env = "UNSET_X"'),
        "team.password_env: environment variable UNSET_X is not set",
    ),
    (
        TEAM_ONLY.replace("[team]", "")
        .replace('username = "supervisor1"', "")
        .replace('password_env = "SUPERVISOR_PASSWORD"', "")
        .replace('agents = ["agent1", "agent2"]', ""),
        "gws.accounts: needs at least one",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_TEAMS)
def test_bad_team_config_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    expected: str,
) -> None:
    monkeypatch.setenv("SUPERVISOR_PASSWORD", "sup3r-secret")
    path = write(tmp_path, text)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err
    assert "sup3r-secret" not in err


@pytest.mark.parametrize(
    "body",
    [
        {"operationName": "Complete"},
        {"operationName": "SendMessage", "text": "hi"},
        {"operationName": "Coach", "supervisorMonitoringMode": "AllChats"},
        {"operationName": "BargeIn"},
        {"operationName": "Monitor", "supervisorMonitoringMode": "Coach"},
        {"operationName": "Monitor"},
        {"operationName": "Intrude", "supervisorVisibilityMode": "BargeIn"},
        {"operationName": "Intrude"},
        {"operationName": "EndContactCenterSession"},
        {"text": "no operation"},
        ["Monitor"],
    ],
)
def test_operations_outside_the_allow_list_are_refused(body: object) -> None:
    """Whatever code asks, a write that could change a conversation is never sent."""
    with pytest.raises(ForbiddenOperationError):
        check_operation(body)


def test_the_silent_operations_pass() -> None:
    for body in (
        {"operationName": "Monitor", "supervisorMonitoringMode": "AllChats"},
        {"operationName": "Intrude", "supervisorVisibilityMode": "Monitor"},
        {"operationName": "Accept"},
        {"operationName": "Leave"},
        {"operationName": "CancelSupervisorMonitoring"},
        {"operationName": "GetInteractionContent"},
    ):
        check_operation(body)
    assert "Complete" not in ALLOWED_OPERATIONS
