"""Credentials in URLs never reach output: config check, error lines, webhook failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import WebhookHook
from archiver.config.model import redact_url

WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK_TOKEN = "hooktok-7d1e"


def config(base_url: str = "http://127.0.0.1:8090", hook_url: str = "") -> str:
    text = f'[gws]\nbase_url = "{base_url}"\n[[gws.accounts]]\nusername = "a"\npassword = "p"\n'
    if hook_url:
        text += f'[[hooks.webhooks]]\nurl = "{hook_url}"\nsecret = "{WEBHOOK_SECRET}"\n'
    return text


def test_redact_url_masks_userinfo_and_credential_parameters() -> None:
    """Passwords in userinfo and token-like query values become ***; the rest stays."""
    assert redact_url("https://u:pw@h.example/x?token=t&page=2") == (
        "https://u:***@h.example/x?token=***&page=2"
    )
    assert redact_url("https://h.example/hook?access_token=a&api_key=b&sig=c&x=1") == (
        "https://h.example/hook?access_token=***&api_key=***&sig=***&x=1"
    )
    assert redact_url("https://tok@h.example/") == "https://***@h.example/"


def test_config_check_never_prints_a_webhook_url_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config check shows the webhook URL with its query token masked."""
    path = tmp_path / "config.toml"
    path.write_text(config(hook_url=f"https://hooks.example/in?token={HOOK_TOKEN}&team=7"))
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert HOOK_TOKEN not in out
    assert "https://hooks.example/in?token=***&team=7" in out


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("http://agent:pw-1234@127.0.0.1:8090", "credentials in the URL are not allowed"),
        ("http://127.0.0.1:8090/?token=abc", "must not have a query or fragment"),
        ("ftp://agent:pw-1234@127.0.0.1", "must be http(s)://host[:port]"),
    ],
)
def test_base_url_with_credentials_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base_url: str, problem: str
) -> None:
    """Userinfo or a query in gws.base_url: exit 2, one line naming the key, no password."""
    path = tmp_path / "config.toml"
    path.write_text(config(base_url=base_url))
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "gws.base_url" in err
    assert problem in err
    assert "pw-1234" not in err


async def test_webhook_failures_do_not_carry_the_url_token() -> None:
    """A failed delivery's error (kept in the archive, printed by hooks status) is masked."""
    from archiver.config import Secret
    from archiver.events import SessionStarted
    from archiver.hooks.webhook import WebhookSink

    hook = WebhookHook(
        url=f"http://bad host.invalid/in?token={HOOK_TOKEN}",
        secrets=(Secret(WEBHOOK_SECRET),),
        name="w",
    )
    event = SessionStarted(
        event_id="e1", seq=1, session_id="S1", occurred_at="2026-01-01T00:00:00.000Z",
        account="a", state="Chatting", participants=[], user_data={},
    )  # fmt: skip
    async with WebhookSink(hook) as sink:
        outcome = await sink.deliver(event)
    assert HOOK_TOKEN not in repr(outcome)
