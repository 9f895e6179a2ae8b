"""A throwaway PostgreSQL cluster for the tests: the system's server, in a temporary folder.

Nothing is downloaded: the server is Debian's ``postgresql`` package (``.ci/run`` installs it),
else the PostgreSQL tests are skipped. As root, the server runs as the ``postgres`` system user
(it refuses to run as root); otherwise as the current user. It listens on 127.0.0.1 on a free
port, trusts every local connection, and trades durability for speed (``fsync=off``).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
MISSING = "not installed (the PostgreSQL tests are skipped; apt-get install postgresql)"
SPEED = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
_SERVER_FILES = ("initdb", "postgres")


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped."""


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _SERVER_FILES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` sorts by (15,); unparsable names sort first."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or None when no server is installed.

    Looks at ``$PG_BINDIR``, then ``pg_config --bindir``, then Debian's
    ``/usr/lib/postgresql/*/bin`` (newest version first), then ``postgres`` on the PATH.
    """
    candidates: list[Path] = []
    if env := os.environ.get("PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if on_path := shutil.which("postgres"):
        candidates.append(Path(on_path).resolve().parent)
    return next((path for path in candidates if _has_server(path)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by_others(folder: Path) -> bool:
    """True when every folder from ``/`` down to ``folder`` lets other users in."""
    return all(part.stat().st_mode & 0o001 for part in (folder, *folder.parents))


class PostgresCluster:
    """One ``initdb``'d cluster and its ``postgres`` process, removed by :meth:`stop`.

    ``start()`` creates and starts it; ``stop_server()`` / ``start_server()`` stop and start
    the server alone, on the same port and data (PostgreSQL going away and coming back);
    ``stop()`` stops the server and removes the folder. Also a context manager.
    """

    def __init__(
        self,
        bindir: Path | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        os_user: str = "postgres",
    ) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresError(f"PostgreSQL server: {MISSING}")
        self.bindir = found
        self.settings = {**SPEED, **(settings or {})}
        self.os_user = os_user
        self.folder: Path | None = None
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None

    # -- paths and the unprivileged user ---------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._require_folder() / "data"

    @property
    def log_path(self) -> Path:
        return self._require_folder() / "postgres.log"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _require_folder(self) -> Path:
        if self.folder is None:
            raise PostgresError("the cluster is not created (call start())")
        return self.folder

    def _run_as(self) -> pwd.struct_passwd | None:
        """The user to run the server as when we are root (None: run as ourselves)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.os_user)
        except KeyError:
            raise PostgresError(
                f"running as root needs the {self.os_user!r} system user to run PostgreSQL as"
            ) from None

    def _make_folder(self) -> Path:
        base = Path(tempfile.gettempdir())
        if self._user is not None and not _traversable_by_others(base):
            base = Path("/tmp")  # e.g. TMPDIR under /root: the postgres user could not reach it
        folder = Path(tempfile.mkdtemp(prefix="gws-postgres-", dir=base))
        if self._user is not None:
            os.chown(folder, self._user.pw_uid, self._user.pw_gid)
        return folder

    def _env(self) -> dict[str, str]:
        """The children's environment: ours without PG* variables, English messages."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        if self._user is not None:
            env["HOME"] = str(self._require_folder())
            env["USER"] = env["LOGNAME"] = self._user.pw_name
        return env

    @property
    def _uid(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._user is None else self._user.pw_gid

    @property
    def _groups(self) -> list[int] | None:
        """No supplementary groups (root's would stay otherwise)."""
        return None if self._user is None else []

    # -- the whole cluster -----------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster in a fresh temporary folder and start its server."""
        if self.folder is not None:
            raise PostgresError(f"the cluster is already created in {self.folder}")
        self._user = self._run_as()
        self.folder = self._make_folder()
        try:
            self._initdb()
            for attempt in range(3):
                self.port = _free_port()
                try:
                    self.start_server()
                    return
                except PostgresError:
                    # another process took the port between our probe and the server's bind
                    if attempt == 2 or "could not bind" not in self.log_tail():
                        raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server at once and remove the folder; safe to call again."""
        try:
            self.stop_server(immediate=True)
        finally:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            self.port = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _initdb(self) -> None:
        output = ""
        for locale in ("C.UTF-8", "C"):  # C.UTF-8: lower() and ILIKE know non-ASCII letters
            shutil.rmtree(self.data_dir, ignore_errors=True)
            command = [
                str(self.bindir / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                "-U", SUPERUSER, "--no-sync", "-E", "UTF8", f"--locale={locale}",
            ]  # fmt: skip
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=self._require_folder(),
                env=self._env(),
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
            if done.returncode == 0:
                return
            output = (done.stdout + done.stderr)[-3000:]
        raise PostgresError(f"initdb failed in {self.data_dir}:\n{output}")

    # -- the server alone ------------------------------------------------------------------

    def start_server(self) -> None:
        """Start the server on the cluster's data and port; return once it accepts connections."""
        if self.running:
            return
        if self.port is None:
            raise PostgresError("the cluster is not created (call start())")
        folder = self._require_folder()
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(folder),
            **self.settings,
        }
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C goes to pytest, which stops us
                cwd=folder,
                env=self._env(),
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.running:
                self._process = None
                raise PostgresError(f"postgres exited at start; its log ends:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass  # refused, or "the database system is starting up"
            if time.monotonic() > deadline:
                self.stop_server(immediate=True)
                raise PostgresError(
                    f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s;"
                    f" its log ends:\n{self.log_tail()}"
                )
            time.sleep(POLL_S)

    def stop_server(self, *, immediate: bool = False) -> None:
        """Stop the server, keeping its data dir and port; nothing when it is not running.

        The default is a fast shutdown (a checkpoint: every commit survives). ``immediate``
        is a crash: recovery replays the WAL at the next start, and with
        ``synchronous_commit=off`` the last commits (under a second) may be lost; a session
        that must keep them sets ``synchronous_commit = on``.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise PostgresError(
                    f"postgres did not stop within {STOP_TIMEOUT_S:.0f} s and was killed;"
                    f" its log ends:\n{self.log_tail()}"
                ) from None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (empty before the first start)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, PostgresError):
            return ""

    # -- databases -------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        if self.port is None:
            raise PostgresError("the cluster is not created (call start())")
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; its URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement)
