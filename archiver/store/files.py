"""The archive file on disk: created private, so its -wal and -shm files are private too.

SQLite (unix VFS) gives a database's ``-wal`` and ``-shm`` files the permission bits of the
database file itself, whatever the umask, so a database file created 0600 keeps all three
readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; leave an existing file alone.

    SQLite takes an empty file for a new database. Raises OSError if the file cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        return
    try:
        # A umask such as 0o277 would leave the owner unable to write the archive it created.
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
