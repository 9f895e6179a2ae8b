"""Configuration: the example loads; every bad file, key, type or value exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import Secret, load_config

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[gws]
base_url = "http://127.0.0.1:8090"
[[gws.accounts]]
username = "agent1"
password = "s3cret-pass"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml is valid and documents the defaults it shows."""
    monkeypatch.setenv("GWS_AGENT1_PASSWORD", "from-env")
    config = load_config(ROOT / "config.example.toml")
    assert config.gws.base_url == "http://127.0.0.1:8090"
    assert config.gws.accounts[0].password.reveal() == "from-env"
    assert config.poll.min_interval_s == 0.5
    assert config.archive.path == ROOT / "archive.sqlite3"


def test_defaults_fill_missing_tables(tmp_path: Path) -> None:
    """Only [gws] is required; every other table has defaults."""
    config = load_config(write(tmp_path, GOOD))
    assert config.poll.max_interval_s == 3.0
    assert config.log.format == "auto"
    assert config.archive.path == tmp_path / "archive.sqlite3"


BAD_CONFIGS = [
    ("[gws\n", "is not valid TOML"),
    ("[poll]\nmin_interval_s = 1.0\n", "gws: is required"),
    (GOOD.replace("http://127.0.0.1:8090", "ftp://gws"), "gws.base_url:"),
    (GOOD.replace("http://127.0.0.1:8090", "http://gws/api/v2"), "gws.base_url:"),
    (GOOD.replace("http://127.0.0.1:8090", "http://127.0.0.1:80900"), "gws.base_url:"),
    (
        GOOD.replace("[[gws.accounts]]", 'page_size = "ten"\n[[gws.accounts]]'),
        "gws.page_size: must be an integer, not a string",
    ),
    (GOOD + "[poll]\nmin_interval_s = -1\n", "poll.min_interval_s: must be greater than 0"),
    (GOOD + "[poll]\nmin_interval_s = 5\nmax_interval_s = 1\n", "poll.max_interval_s:"),
    (GOOD + "[poll]\njitter = 1.5\n", "poll.jitter:"),
    (
        GOOD.replace('password = "s3cret-pass"', 'password_env = "NOPE_UNSET_VAR"'),
        "gws.accounts[0].password_env: environment variable NOPE_UNSET_VAR is not set",
    ),
    (
        GOOD.replace('password = "s3cret-pass"', 'password = "a"\npassword_env = "B"'),
        "gws.accounts[0].password_env: set exactly one",
    ),
    (
        GOOD + '[[gws.accounts]]\nusername = "agent1"\npassword = "x"\n',
        "gws.accounts[1].username: appears twice",
    ),
    (GOOD + "[pol]\nmin_interval_s = 1\n", "pol: is not a known key"),
    (GOOD + '[log]\nlevel = "loud"\n', "log.level: must be one of"),
    (GOOD + "[archive]\npath = 3\n", "archive.path: must be a string"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A bad file, key, type or value stops start-up: exit 2, one line naming file and key."""
    path = write(tmp_path, text)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err
    assert expected in err
    assert "s3cret-pass" not in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config path that does not exist is a configuration error, not a traceback."""
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_secret_is_masked_in_reprs(tmp_path: Path) -> None:
    """Guarantee 8: the password never shows in the config's repr or str."""
    config = load_config(write(tmp_path, GOOD))
    assert "s3cret-pass" not in repr(config)
    assert "s3cret-pass" not in str(config.gws.accounts)
    assert config.gws.accounts[0].password == Secret("s3cret-pass")
