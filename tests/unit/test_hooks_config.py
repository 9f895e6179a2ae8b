"""Hooks configuration: every kind parses, names are derived, and bad values exit 2 by key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import CommandHook, Secret, load_config, parse_config
from tests.support.hooks import OTHER_SECRET, SECRET

ROOT = Path(__file__).resolve().parents[2]
GWS = """
[gws]
base_url = "http://127.0.0.1:8090"
[[gws.accounts]]
username = "agent1"
password = "pw"
"""
HOOKS = f"""
[[hooks.webhooks]]
url = "https://crm.example.com/events?team=1"
secret = "{SECRET}"
secrets_env = ["OLD_HOOK_SECRET"]
types = ["Text", "SessionEnded"]

[[hooks.webhooks]]
name = "bi"
url = "http://127.0.0.1:9000/hook"
secret_env = "BI_SECRET"
sessions = ["S1"]
retry_delays_s = [1, 2.5]
max_attempts = 3

[[hooks.commands]]
command = "jq -c . >> /var/log/events.jsonl"

[[hooks.commands]]
name = "notify"
argv = ["/usr/bin/notify", "--quiet"]
accounts = ["agent1"]
timeout_s = 5

[[hooks.python]]
target = "my_package.hooks:on_event"
"""
ENV = {"OLD_HOOK_SECRET": OTHER_SECRET, "BI_SECRET": SECRET}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_every_kind_parses_with_derived_names(tmp_path: Path) -> None:
    """Several subscribers of each kind load, with defaults, filters and derived names."""
    hooks = load_config(write(tmp_path, GWS + HOOKS), environ=ENV).hooks
    assert [h.name for h in (*hooks.webhooks, *hooks.commands, *hooks.python)] == [
        "webhook:crm.example.com/events",
        "bi",
        "command:jq",
        "notify",
        "python:my_package.hooks:on_event",
    ]
    crm, bi = hooks.webhooks
    assert crm.secrets == (Secret(SECRET), Secret(OTHER_SECRET))
    assert (crm.timeout_s, crm.max_attempts, crm.filters.types) == (
        15.0,
        8,
        ("Text", "SessionEnded"),
    )
    assert (bi.retry.delays_s, bi.retry.max_attempts, bi.sessions) == ((1.0, 2.5), 3, ("S1",))
    assert hooks.commands[0].argv == ("/bin/sh", "-c", "jq -c . >> /var/log/events.jsonl")
    assert hooks.commands[1] == CommandHook(
        name="notify", argv=("/usr/bin/notify", "--quiet"), accounts=("agent1",), timeout_s=5.0
    )
    assert hooks.python[0].target == "my_package.hooks:on_event"
    assert hooks.plugins is True


def test_webhook_secrets_are_masked(tmp_path: Path) -> None:
    """Guarantee 8: webhook secrets never show in the configuration's repr."""
    config = load_config(write(tmp_path, GWS + HOOKS), environ=ENV)
    assert SECRET not in repr(config)
    assert OTHER_SECRET not in repr(config.hooks)


def test_example_hooks_section_loads() -> None:
    """Uncommented, the example file's hooks section is a valid configuration."""
    text = (ROOT / "config.example.toml").read_text()
    section = text[text.index("# Event hooks:") :].splitlines()
    uncommented = [line[2:] for line in section if re.match(r"# (\[|[a-z_]+ = )", line)]
    document = tomllib.loads(GWS + "\n".join(uncommented))
    hooks = parse_config(document, "example", {"GWS_HOOK_SECRET": SECRET}).hooks
    assert [h.name for h in (*hooks.webhooks, *hooks.commands, *hooks.python)] == [
        "webhook:crm.example.com/gws-events",
        "transcript-log",
        "python:my_package.hooks:on_event",
    ]


BAD_HOOKS = [
    ('[[hooks.webhooks]]\nurl = "https://x/h"\n', "hooks.webhooks[0].secret_env: set a secret"),
    (
        '[[hooks.webhooks]]\nurl = "https://x/h"\nsecret = "s3cret-hook-key"\n',
        "hooks.webhooks[0].secret: must start with whsec_",
    ),
    (
        '[[hooks.webhooks]]\nurl = "https://x/h"\nsecret = "whsec_c2hvcnQ="\n',
        "hooks.webhooks[0].secret: must decode to 24-64 bytes, not 5",
    ),
    (
        '[[hooks.webhooks]]\nurl = "https://x/h"\nsecret_env = "NOPE_UNSET"\n',
        "hooks.webhooks[0].secret_env: environment variable NOPE_UNSET is not set",
    ),
    (
        f'[[hooks.webhooks]]\nurl = "ftp://x/h"\nsecret = "{SECRET}"\n',
        "hooks.webhooks[0].url: must be an http(s) URL",
    ),
    (
        f'[[hooks.webhooks]]\nurl = "https://x:99999/h"\nsecret = "{SECRET}"\n',
        "hooks.webhooks[0].url: must be an http(s) URL",
    ),
    (
        f'[[hooks.webhooks]]\nurl = "https://x/h"\nsecret = "{SECRET}"\ntypes = ["Txt"]\n',
        "hooks.webhooks[0].types: unknown event type 'Txt'",
    ),
    (
        f'[[hooks.webhooks]]\nurl = "https://x/h"\nsecret = "{SECRET}"\ntimeout_s = 0\n',
        "hooks.webhooks[0].timeout_s: must be greater than 0",
    ),
    (
        f'[[hooks.webhooks]]\nurl = "https://x/h"\nsecret = "{SECRET}"\nsekret = 1\n',
        "hooks.webhooks[0].sekret: is not a known key",
    ),
    (
        '[[hooks.commands]]\nargv = ["a"]\ncommand = "b"\n',
        "hooks.commands[0].argv: set exactly one of argv or command",
    ),
    (
        '[[hooks.commands]]\nargv = ["/bin/true"]\nretry_delays_s = []\n',
        "hooks.commands[0].retry_delays_s: must be a non-empty array",
    ),
    (
        '[[hooks.commands]]\nargv = ["/bin/true"]\n[[hooks.commands]]\ncommand = "true"\n',
        "hooks.commands[1].name: 'command:true' appears twice",
    ),
    ('[[hooks.python]]\ntarget = "no colon"\n', "hooks.python[0].target: must be module:function"),
    ("[hooks]\nwebhooks = 3\n", "hooks.webhooks: must be an array"),
    ("[hooks]\nplugins = 1\n", "hooks.plugins: must be true or false"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_HOOKS)
def test_bad_hooks_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A bad hooks value stops start-up with exit 2 and one line naming the key."""
    path = write(tmp_path, GWS + text)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err
    assert "s3cret-hook-key" not in err


def test_unloadable_python_target_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Python target that cannot be imported stops `run` with exit 2 naming the key."""
    path = write(tmp_path, GWS + '[[hooks.python]]\ntarget = "no_such_module_x:fn"\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "hooks.python[0].target: cannot be loaded" in err
    assert err.count("\n") == 1
