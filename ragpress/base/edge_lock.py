"""One process owns an embedded index folder; a second one is told who owns it.

Qdrant Edge already refuses a second opener, but with "failed to open WAL ...: Kind(WouldBlock)". Taking our own
advisory lock first turns that into an error that names the owner and says what to do. ``flock`` locks die with
their process, so a SIGKILLed owner never leaves a stale lock behind (the pid in the file is only a hint).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".ragpress-owner.lock"


class IndexLockedError(RuntimeError):
    """The index folder is owned by another process (or another store object in this one)."""

    def __init__(self, folder: Path, owner: str) -> None:
        super().__init__(
            f"the index at {folder} is owned by another process (pid {owner}); stop it or point "
            "RAGPRESS_DATA_DIR elsewhere (one process owns an embedded index: send work to it through its API)."
        )
        self.folder = folder
        self.owner = owner


class FolderLock:
    """An exclusive, non-blocking advisory lock on ``<folder>/.ragpress-owner.lock`` holding the owner's pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(self.folder, owner) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def owner_pid(folder: Path) -> int | None:
    """The pid recorded by the folder's current owner, or None if nobody holds the lock."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
