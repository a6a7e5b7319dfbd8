"""Reading a local file a client pointed us at (``csv:DIR``, ``jsonl:DIR``) without trusting it.

The folder is chosen by the client, and any member of the ``trading`` group can write to a
folder the services can read (``/dev/shm`` is one). So a "file" may be a FIFO, whose
``open()`` blocks until a writer appears (forever), a symlink to ``/dev/zero`` or another
device that never ends, or just huge. :func:`read_bounded` is the one way a source reads such a
file (or :func:`open_bounded`, the same checks for a file read as a stream):

- ``open`` with ``O_NONBLOCK`` (a FIFO without a writer opens at once instead of blocking) and
  ``O_NOCTTY`` (a terminal never becomes our controlling one);
- ``fstat`` the *opened* descriptor (no window between a check and the open) and read only a
  regular file;
- read at most ``limit + 1`` bytes, so a file that lies about its size (``/proc``) or grows
  while it is read still costs at most ``limit`` bytes of memory.

:func:`open_bounded` keeps the last guarantee while streaming: the reader it returns raises
:class:`UnusableFile` as soon as more than ``limit`` bytes have come through it, so a parser
that never holds the whole file (a CSV of a million rows) is bounded the same way.

A refused file raises :class:`UnusableFile` (a ``ValueError``) saying which file and why; a
missing one the usual ``FileNotFoundError``.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

CHUNK = 1 << 20


class UnusableFile(ValueError):
    """A local file that is not a regular file, or larger than its limit."""

    def __init__(self, path: Path, why: str, reason: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.reason = reason  # "not-a-regular-file" or "too-large"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, if it holds at most ``limit`` of them."""
    with open_bounded(path, limit) as f:
        return f.read()


def open_bounded(path: Path, limit: int) -> io.BufferedReader:
    """A binary reader of the regular file ``path`` that refuses to go past ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnusableFile(path, f"is {_kind(mode)}, not a regular file; only regular "
                                     "files are read", "not-a-regular-file")
        raw = _Bounded(fd, path, limit)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(raw, CHUNK)


class _Bounded(io.RawIOBase):
    """The raw reader of :func:`open_bounded`: owns ``fd``; at most ``limit + 1`` bytes are
    ever read from it, and the one past the limit raises instead of being returned."""

    def __init__(self, fd: int, path: Path, limit: int) -> None:
        super().__init__()
        self.fd, self.path, self.limit = fd, path, limit
        self.left = limit + 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.read(self.fd, min(len(buffer), self.left))
        self.left -= len(data)
        if self.left <= 0:
            raise UnusableFile(self.path, f"is larger than the limit of {self.limit:,} bytes",
                               "too-large")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()
