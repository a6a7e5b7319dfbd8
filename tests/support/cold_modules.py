"""A handler as systemd starts it, reporting which costly modules it had loaded when its first
answer was built: ``python [-S] tests/support/cold_modules.py SERVICE [handler options]``.
Prints ``cold-modules: [...]`` on stderr (those loaded since this script began), then serves
on."""

from __future__ import annotations

import sys

BEFORE = set(sys.modules)  # the interpreter's own start-up is not the handler's doing

from trading.handlers import SERVICES, main
from trading.runtime import protocol

# Paid only by the paths that need them: logging (~10 ms) by the first record (the lazy
# trading.log loggers: a handler that answers without logging never loads it), argparse when
# a handler is given arguments (units give none), zoneinfo by the market calendar, typing by
# nothing at run time (annotations are strings), pathlib and urllib.parse by the store and
# the sources, systemd.daemon by nothing (activation speaks sd_listen_fds and sd_notify
# itself), numpy by the computing methods. (sqlite3 is not watched: market-data's
# health_check counts its cache in the store.)
WATCHED = ("logging", "traceback", "argparse", "zoneinfo", "typing", "pathlib",
           "urllib.parse", "systemd.daemon", "numpy")


def _watch() -> None:
    handle_line = protocol.Dispatcher.handle_line
    first = [True]

    def handled(self, line):
        answer = handle_line(self, line)
        if first[0]:
            first[0] = False
            loaded = sorted(m for m in WATCHED if m in sys.modules and m not in BEFORE)
            sys.stderr.write(f"cold-modules: {loaded!r}\n")
            sys.stderr.flush()
        return answer

    protocol.Dispatcher.handle_line = handled


if __name__ == "__main__":
    service = sys.argv.pop(1)
    _watch()
    module = __import__(SERVICES[service], fromlist=["SERVICE"])
    raise SystemExit(main(module.SERVICE))
