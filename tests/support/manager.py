"""A socket manager that does what systemd does for an ``Accept=no`` socket unit.

It binds and holds the listening socket. While no handler runs, it polls the socket; when a
connection waits, it starts the handler with the socket passed as fd 3 (LISTEN_FDS=1,
LISTEN_PID set to the handler's own PID). While the handler runs, it does not touch the socket.
When the handler exits, connections still in the backlog start the next one. This is the
behaviour the runtime's idle exit relies on; the real systemd is tested in test_systemd*.py.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

_EXEC = (
    "import os, runpy, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='main')\n"
    "mod = sys.argv[2]; sys.argv = [mod] + sys.argv[3:]\n"
    "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
)


class SocketManager:
    def __init__(self, path: Path, module: str, env: dict[str, str], args: list[str] = ()) -> None:
        self.path = path
        self.module = module
        self.env = env
        self.args = list(args)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(128)
        self.starts = 0
        self.exit_codes: list[int] = []
        self.child: subprocess.Popen | None = None
        self.logs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        fd = self.sock.fileno()
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.05)
            if not r:
                continue
            self.starts += 1
            self.child = subprocess.Popen(
                [sys.executable, "-c", _EXEC, str(fd), self.module, *self.args],
                pass_fds=(fd,), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            out, _ = self.child.communicate()
            self.logs.append(out)
            self.exit_codes.append(self.child.returncode)

    def close(self) -> None:
        self._stop.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
        self._thread.join(15)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
