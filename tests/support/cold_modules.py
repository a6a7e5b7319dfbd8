"""A handler as systemd starts it, reporting which costly modules it had loaded when its first
answer was built: ``python [-S] tests/support/cold_modules.py SERVICE [handler options]``.
Prints ``cold-modules: [...]`` on stderr (those loaded since this script began), then serves
on."""

from __future__ import annotations

import sys

BEFORE = set(sys.modules)  # the interpreter's own start-up is not the handler's doing

from trading.handlers import SERVICES, main
from trading.runtime import protocol

# Paid only by the paths that need them (logging: once the first answer is out). enum (with
# re, json, socket, signal and pathlib, which all import it) is about 10 ms of a cold start;
# the runtime uses their C cores (_json, _socket, _signal) and string paths.
WATCHED = ("logging", "traceback", "argparse", "zoneinfo", "typing", "enum", "re", "json",
           "socket", "signal", "selectors", "pathlib", "urllib.parse", "systemd.daemon",
           "contextlib")


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
