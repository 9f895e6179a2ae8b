"""One daemon per archive: an exclusive lock on ``<archive>.lock`` for the daemon's whole life.

A second ``gws-archiver run`` on the same archive would fight the first for the write lock and
re-read every session; it refuses to start instead, naming the running one. The lock is an
``fcntl.flock`` on a file beside the archive, so the kernel releases it when the process dies,
``kill -9`` included: a stale lock file never blocks a restart. Read commands take no lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from archiver.errors import InstanceLockedError, StoreError
from archiver.lifecycle import Resource


class InstanceLock(Resource):
    """Holds ``<archive>.lock`` exclusively while open; an async context manager."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.path = archive.with_name(archive.name + ".lock")
        self._fd: int | None = None

    async def open(self) -> None:
        """Take the lock, or raise InstanceLockedError naming the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open the archive {self.archive}: its lock file {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InstanceLockedError(
                f"another gws-archiver is running on {self.archive} (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    async def close(self) -> None:
        """Release the lock; safe to call twice (the file stays, unlocked)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
