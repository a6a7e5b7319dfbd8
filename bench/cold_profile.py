#!/usr/bin/env python3
"""Where a cold start's time goes: from the client's connect to its first answer, by stage.

    .venv/bin/python bench/cold_profile.py [--runs 15] [--service market-data]

Each run starts the handler under ``systemd-socket-activate`` (as systemd would, on the first
connection), with this file as the handler's main: it records a ``CLOCK_MONOTONIC`` mark at
each stage (interpreter up, the handler module imported, the runtime imported, the config
loaded, the socket adopted, the service and server built, READY, the first line read, parsed
and answered) by wrapping the runtime's own functions, then runs the handler unchanged. The
client's connect and its answer are marks on the same clock. Prints the median of each stage
over ``--runs`` cold starts, and ``python -c pass`` for reference. For the imports inside a
stage, ``python -X importtime -m trading.handlers.market_data``.
"""

from __future__ import annotations

import time

T0 = time.monotonic()  # first: the interpreter is up and running this file

import sys  # noqa: E402  (already loaded: free)

# Nothing else at the top: as the handler, every import of this file would be counted in
# the handler's first stage; the driver imports what it needs in drive().


def handler(service: str, out: str) -> int:
    """Run ``service``'s handler with stage marks; write them to ``out`` after the first
    answer."""
    import importlib  # already loaded by the interpreter's start-up: free

    marks = [("interpreter up", T0)]

    def mark(name: str) -> None:
        marks.append((name, time.monotonic()))

    from trading.handlers import SERVICES

    module = importlib.import_module(SERVICES[service])
    mark("handler module imported")
    from trading import config
    from trading.runtime import activation, protocol, server

    mark("runtime imported (activation, server)")

    def wrap(owner, name, before=None, after=None):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if before:
                mark(before)
            result = original(*args, **kwargs)
            if after:
                mark(after)
            return result

        setattr(owner, name, wrapper)

    wrap(config, "get", after="config loaded (config, client)")
    wrap(activation, "adopt_sockets", after="socket adopted")
    wrap(server.Server, "__init__", before="context and service built",
         after="server built (dispatcher)")
    activation.no_notify = lambda state: mark("READY") if state.startswith("READY") else None
    first = [True]
    decode = protocol.decode

    def decoded(text):
        value = decode(text)
        if first[0]:
            mark("first request parsed")
        return value

    protocol.decode = decoded
    handle_line = protocol.Dispatcher.handle_line

    def handled(self, line):
        if first[0]:
            mark("first line read")
        answer = handle_line(self, line)
        if first[0]:
            first[0] = False
            mark("first answer built (the method ran)")
            # Tab-separated: nothing more to import before the answer is sent.
            with open(out, "w") as f:
                f.writelines(f"{name}\t{t!r}\n" for name, t in marks)
        return answer

    protocol.Dispatcher.handle_line = handled
    from trading.handlers import main

    return main(module.SERVICE)


def drive(runs: int, service: str) -> None:
    import os
    import statistics
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_runtime as bench

    from trading.handlers import SERVICES  # noqa: F401  (fails early on a bad install)

    tmp = Path(tempfile.mkdtemp(prefix="cold-profile-"))
    os.environ.setdefault("TRADING_STATE_DIR", str(tmp / "state"))
    os.environ.setdefault("TRADING_CACHE_DIR", str(tmp / "cache"))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode written once
    out, sock = tmp / "marks.json", tmp / "c.sock"
    stages: dict[str, list[float]] = {}
    totals = []
    for _ in range(runs):
        out.unlink(missing_ok=True)
        proc = bench.activated(sock, [bench.PYTHON, __file__, "--handler", service, str(out)])
        t0 = time.monotonic()
        conn = bench.connect(sock)
        bench.roundtrip(conn, bench.REQUEST)
        t1 = time.monotonic()
        conn.close()
        proc.terminate()
        proc.wait()
        previous = t0
        marks = [(name, float(t)) for name, t in
                 (line.split("\t") for line in out.read_text().splitlines())]
        for name, t in marks + [("answer back at the client", t1)]:
            stages.setdefault(name, []).append((t - previous) * 1000)
            previous = t
        totals.append((t1 - t0) * 1000)
    print(f"cold start of {service} (health_check), median of {runs}, from the client's connect")
    for name, values in stages.items():
        print(f"  {name:44} {statistics.median(values):7.2f} ms")
    print(f"  {'total':44} {statistics.median(totals):7.2f} ms")
    print(f"  {'python -c pass (reference)':44} "
          f"{statistics.median(bench.python_pass(runs)) * 1000:7.2f} ms")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--handler":
        service, out = sys.argv[2], sys.argv[3]
        del sys.argv[1:]  # the handler parses its own command line
        raise SystemExit(handler(service, out))
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--service", default="market-data")
    args = ap.parse_args()
    drive(args.runs, args.service)
