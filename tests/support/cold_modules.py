"""A handler as systemd starts it, reporting which costly modules it had loaded when its first
answer was built: ``python -m support.cold_modules SERVICE [handler options]``, with
``tests/`` on ``PYTHONPATH``. Prints ``cold-modules: [...]`` on stderr, then serves on."""

from __future__ import annotations

import sys

from trading.handlers import SERVICES, main
from trading.runtime import protocol

# Paid only by the paths that need them (logging: once the first answer is out).
WATCHED = ("logging", "traceback", "argparse", "zoneinfo", "typing")


def _watch() -> None:
    handle_line = protocol.Dispatcher.handle_line
    first = [True]

    def handled(self, line):
        answer = handle_line(self, line)
        if first[0]:
            first[0] = False
            loaded = sorted(m for m in WATCHED if m in sys.modules)
            sys.stderr.write(f"cold-modules: {loaded!r}\n")
            sys.stderr.flush()
        return answer

    protocol.Dispatcher.handle_line = handled


if __name__ == "__main__":
    service = sys.argv.pop(1)
    _watch()
    module = __import__(SERVICES[service], fromlist=["SERVICE"])
    raise SystemExit(main(module.SERVICE))
