"""Peak memory of a command and the processes it forks, for the benchmarks.

``os.wait4`` gives a command's high-water mark, or its reaped children's when one of them
peaked higher: the larger of the two, never their sum. A replay forks a reader and a large
report a second reading process, both alive beside the command, so the benchmarks add each
process's own high-water mark (``VmHWM`` in ``/proc``, read every 20 ms while the command
runs): an upper bound on what they held at once.
"""

from __future__ import annotations

import threading
import time


class Peaks:
    """Watch ``pid`` and its children until ``pid`` ends; then :meth:`mb`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.marks: dict[int, float] = {}  # pid -> its high-water mark, MB
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                return
            for p in (self.pid, *kids):
                mark = _hwm(p)
                if mark is not None:
                    self.marks[p] = max(self.marks.get(p, 0.0), mark)
            time.sleep(0.02)

    def mb(self, ru_maxrss_kb: int) -> tuple[float, float]:
        """``(command, children)``: the command's peak (``wait4``'s figure when higher: the
        last 20 ms are not watched) and the sum of its children's."""
        self._thread.join()
        command = max(ru_maxrss_kb / 1024, self.marks.get(self.pid, 0.0))
        return command, sum(v for p, v in self.marks.items() if p != self.pid)


def _hwm(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
