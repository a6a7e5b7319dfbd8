"""A busy client (issue 27): ``python busy_client.py SOCKET CONNS GAP``.

CONNS connections, each sending health_check as soon as (or GAP seconds after) its answer
comes, and reconnecting at once when the service closes it. Prints "ready" once every
connection has had an answer, and on SIGTERM how many answers it had in all. Standard library
only: it runs as a script of its own, by path. Tests use :func:`start` and :func:`stop`.
"""

import signal
import socket
import subprocess
import sys
import threading
import time

REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"health_check"}\n'


def main() -> None:
    path, conns, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    answered = [0] * conns
    first = threading.Barrier(conns + 1)

    def hammer(i: int) -> None:
        ready = False
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(path)
                    while True:
                        s.sendall(REQUEST)
                        data = b""
                        while not data.endswith(b"\n"):
                            chunk = s.recv(65536)
                            if not chunk:
                                raise ConnectionError("closed by the service")
                            data += chunk
                        answered[i] += 1
                        if not ready:
                            ready = True
                            first.wait()
                        time.sleep(gap)
            except OSError:
                time.sleep(0.005)

    for i in range(conns):
        threading.Thread(target=hammer, args=(i,), daemon=True).start()
    first.wait()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (print(sum(answered), flush=True), sys.exit(0)))
    while True:
        time.sleep(60)


def start(path, processes: int, conns: int, gap: float) -> list:
    """``processes`` busy clients, each with ``conns`` connections sending health_check
    ``gap`` seconds apart; returns once every connection has had an answer."""
    procs = [subprocess.Popen([sys.executable, __file__, str(path), str(conns), str(gap)],
                              stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def stop(procs: list) -> list[int]:
    """SIGTERM each busy client; the answers each had."""
    counts = []
    for p in procs:
        p.terminate()
        out, _ = p.communicate(timeout=10)
        counts.append(int(out.split()[-1]) if out.split() else 0)
    return counts


if __name__ == "__main__":
    main()
