"""Files that hold secrets or signing state: created readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path


def create_private_file(path: Path) -> bool:
    """Create ``path`` (and its directory, 0700) as an empty 0600 file if it is missing;
    ``True`` if it was created here.

    Created before SQLite opens it, so the database never exists with the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
