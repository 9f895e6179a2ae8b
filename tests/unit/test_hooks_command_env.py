"""Command hooks run with a minimal environment: no daemon secrets, only what is listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import CommandHook, load_config
from archiver.errors import ConfigError
from archiver.events import Event, Text
from archiver.hooks.command import CommandSink
from archiver.hooks.sink import DELIVERED

# What sh itself may add to the environment it passes on to `env`.
SHELL_VARIABLES = {"PWD", "OLDPWD", "SHLVL", "_"}
GWS = """
[gws]
base_url = "http://127.0.0.1:8090"
[[gws.accounts]]
username = "agent1"
password = "pw"
"""


def event() -> Event:
    return Text(
        event_id="evt_S1_7",
        seq=42,
        session_id="S1",
        occurred_at="2024-03-01T00:00:00.000Z",
        account="agent1",
        index=7,
        text="hello",
    )


async def environment_of_program(tmp_path: Path, env_pass: tuple[str, ...] = ()) -> dict[str, str]:
    """Run a real command hook that dumps its environment; return that environment."""
    out = tmp_path / "env.txt"
    hook = CommandHook(
        name="dump", argv=("/bin/sh", "-c", 'env > "$1"', "sh", str(out)), env_pass=env_pass
    )
    assert await CommandSink(hook).deliver(event()) == DELIVERED
    names_values = (line.partition("=") for line in out.read_text().splitlines() if "=" in line)
    return {name: value for name, _, value in names_values if name not in SHELL_VARIABLES}


@pytest.fixture
def daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon environment holding secrets next to the ordinary variables."""
    monkeypatch.setenv("GWS_PASSWORD_AGENT1", "pw-s3cret-1")
    monkeypatch.setenv("GWS_HOOK_SECRET", "whsec_s3cret2")
    monkeypatch.setenv("GWS_ARCHIVER_TOKEN", "tok-s3cret-3")
    monkeypatch.setenv("CRM_API_URL", "https://crm.example.com")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("HOME", "/home/archiver")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "en_GB.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.delenv("LC_ALL", raising=False)


@pytest.mark.usefixtures("daemon_env")
async def test_program_does_not_see_the_daemons_secrets(tmp_path: Path) -> None:
    """No password, webhook secret or server token of the daemon reaches a hook program."""
    seen = await environment_of_program(tmp_path)
    dump = (tmp_path / "env.txt").read_text()
    for secret in ("pw-s3cret-1", "whsec_s3cret2", "tok-s3cret-3"):
        assert secret not in dump
    assert "GWS_PASSWORD_AGENT1" not in seen
    assert "CRM_API_URL" not in seen


@pytest.mark.usefixtures("daemon_env")
async def test_program_gets_exactly_the_minimal_set_and_the_event(tmp_path: Path) -> None:
    """The environment is PATH, HOME, LANG, LC_*, TZ (those set) plus the event's variables."""
    seen = await environment_of_program(tmp_path)
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/archiver",
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "TZ": "UTC",
        "GWS_EVENT_ID": "evt_S1_7",
        "GWS_EVENT_TYPE": "Text",
        "GWS_EVENT_SEQ": "42",
        "GWS_SESSION_ID": "S1",
    }


@pytest.mark.usefixtures("daemon_env")
async def test_env_pass_adds_named_variables_only(tmp_path: Path) -> None:
    """Names in env_pass are passed when set; unset ones are skipped; others stay out."""
    seen = await environment_of_program(tmp_path, env_pass=("CRM_API_URL", "NOT_SET_ANYWHERE"))
    assert seen["CRM_API_URL"] == "https://crm.example.com"
    assert "NOT_SET_ANYWHERE" not in seen
    assert "GWS_HOOK_SECRET" not in seen


@pytest.mark.usefixtures("daemon_env")
async def test_env_pass_cannot_override_the_event_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon variable named like an event variable never replaces the event's value."""
    monkeypatch.setenv("GWS_EVENT_ID", "forged")
    seen = await environment_of_program(tmp_path, env_pass=("GWS_EVENT_ID",))
    assert seen["GWS_EVENT_ID"] == "evt_S1_7"


def test_env_pass_is_read_from_the_config(tmp_path: Path) -> None:
    """env_pass in a [[hooks.commands]] table becomes the hook's env_pass."""
    path = tmp_path / "config.toml"
    path.write_text(GWS + '[[hooks.commands]]\nargv = ["/bin/true"]\nenv_pass = ["CRM_URL"]\n')
    (hook,) = load_config(path, {}).hooks.commands
    assert hook.env_pass == ("CRM_URL",)


@pytest.mark.parametrize(
    ("value", "key", "problem"),
    [
        ('"CRM_URL"', "env_pass", "must be an array"),
        ("[1]", "env_pass", "must be an array of non-empty strings"),
        ('["CRM URL"]', "env_pass[0]", "must be an environment variable name, not 'CRM URL'"),
        ('["A", "B=1"]', "env_pass[1]", "must be an environment variable name, not 'B=1'"),
    ],
)
def test_bad_env_pass_is_one_error_naming_file_and_key(
    tmp_path: Path, value: str, key: str, problem: str
) -> None:
    """A bad env_pass is one ConfigError naming the file, the dotted key and the problem."""
    path = tmp_path / "config.toml"
    path.write_text(GWS + f'[[hooks.commands]]\nargv = ["/bin/true"]\nenv_pass = {value}\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert raised.value.path == str(path)
    assert raised.value.key == f"hooks.commands[0].{key}"
    assert problem in raised.value.problem
    assert "\n" not in str(raised.value)
