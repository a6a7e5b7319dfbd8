"""A plugged predictor's own process: stopped when it will not stop, kept warm between calls.

A predictor is the trader's code. Run on a thread of the service, one inside a long C call
that holds the GIL froze the whole service (``health_check`` included) until the watchdog
killed it about 60 s later, and one spinning in Python ran for ever: ``predictor_timeout``
could only stop *waiting* for it (issue 27). So every predictor but the built-in rules runs in
a child process of its own, started on the first call and kept for the next ones. A call
that runs past its budget kills the child (SIGKILL, which nothing in it can refuse or delay:
a held GIL, a blocked signal, a sleep in the kernel alike); the next call starts a new one,
which imports the predictor again.

This module is the service's side; :func:`trading.signals.predictors.serve` is the child's.
They speak JSON lines over the child's stdin and a copy of its stdout (the predictor's own
prints go to stderr, the service's journal)::

    -> {"load": "module:Name", "directory": DIR | null}
    <- {"loaded": {name, form, file, version}, "import_s": S} | {"error": MESSAGE}
    -> {"config": {...}}        the configuration the predictor is handed (no answer)
    -> {"jobs": [{"symbol", "market", "sentiment", "model"}, ...]}
    <- one line per job, in order: {"answer": {...}, "cut_from": BYTES?} |
       {"not_mapping": TYPE} | {"raised": TYPE, "message": TEXT} | {"too_large": BYTES}

Nothing the child says is trusted: a line longer than ``line_limit`` or not JSON ends it, the
file's digest is taken here, and each answer is checked by the caller
(:func:`trading.signals.predictors.run`) as an in-process predictor's is. The child exits
when the pipe closes (the service exited or was killed), even while the predictor spins.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import select
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trading.errors import PredictorFailed, PredictorTimeout, PredictorUnavailable
from trading.runtime.protocol import LineBuffer, LineTooLong, decode, encode

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MESSAGE_LIMIT = 2000  # characters of a message from the child passed on

_children: weakref.WeakSet[_Child] = weakref.WeakSet()


class _Gone(Exception):
    """The child ended, or said something outside the protocol: it is stopped."""


class _Late(Exception):
    """The budget ran out before the child answered."""


class _Child:
    """One child process and the two ends of its pipe, written and read against deadlines."""

    def __init__(self, command: Sequence[str], line_limit: int) -> None:
        # Not systemd's variables: the predictor must not speak for the service to systemd.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_"))}
        self.proc = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0, close_fds=True, env=env)
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        os.set_blocking(self.fd_in, False)  # a child that stops reading cannot block us
        self.limit = line_limit
        self.lines = LineBuffer(line_limit)
        self.ready: list[bytes] = []
        self.config: Any = None  # the configuration object the child has (sent once)
        _children.add(self)

    def send(self, message: Any, deadline: float) -> None:
        """Write one line (_Late when the deadline passes first)."""
        data = memoryview(encode(message))
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Late
            if not _wait(self.fd_in, select.POLLOUT, remaining):
                continue
            try:
                data = data[os.write(self.fd_in, data):]
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: it is gone
                raise _Gone(f"its process ended ({self._status()})") from exc

    def receive(self, deadline: float) -> Any:
        """The next message (_Late when the deadline passes first)."""
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Late
            if not _wait(self.fd_out, select.POLLIN, remaining):
                continue
            chunk = os.read(self.fd_out, 1 << 16)
            if not chunk:
                raise _Gone(f"its process ended ({self._status()})")
            try:
                self.ready.extend(self.lines.feed(chunk))
            except LineTooLong as exc:
                raise _Gone(f"it sent a line over {self.limit} bytes") from exc
        try:
            return decode(self.ready.pop(0).decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise _Gone(f"it sent a line that is not JSON: {exc}") from exc

    def _status(self) -> str:
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Kill and reap it (SIGKILL: nothing in it can delay this)."""
        _children.discard(self)
        if self.proc.poll() is None:
            self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.proc.wait()


def stop_all() -> None:
    """Stop every child of this process (at exit; tests, between tests)."""
    for child in list(_children):
        child.stop()


atexit.register(stop_all)


class ProcessPredictor:
    """A predictor living in a child process, with a loaded predictor's face (``name``,
    ``form``, ``provenance``, ``import_s``, ``lock``, ``busy_since``, :meth:`describe`):
    :meth:`run_batch` gives it one call's jobs. ``command`` starts the child's side."""

    isolated = True

    def __init__(self, spec: str, directory: Path | None, command: Sequence[str],
                 line_limit: int) -> None:
        self.name = spec
        self.directory = directory
        self.command = list(command)
        self.line_limit = line_limit
        self.form = ""
        self.provenance: JSON = {"name": spec}
        self.import_s = 0.0
        # One batch at a time: the child answers one call's jobs in order.
        self.lock = threading.Lock()
        self.busy_since: float | None = None
        self._child: _Child | None = None

    def start(self, timeout: float) -> ProcessPredictor:
        """Start the child and import the predictor there (PredictorUnavailable when it cannot
        be imported or built, or does not finish within ``timeout`` seconds)."""
        with self.lock:
            self._child = self._spawn(time.monotonic() + timeout, timeout)
        return self

    def describe(self) -> JSON:
        """What ``health_check``, ``trading status`` and ``trading config show`` print."""
        return {**self.provenance, "ok": True, "import_ms": round(self.import_s * 1000, 1)}

    def close(self) -> None:
        """Stop the child (waiting for a call in progress, at most its budget)."""
        with self.lock:
            self._stop_child()

    def run_batch(self, jobs: Sequence[Any], config: Any, budget: float
                  ) -> tuple[list[tuple[Any, Any]], dict[str, JSON]]:
        """The jobs (``symbol``, ``market``, ``sentiment``, ``model``, ``key``) to the child in
        one line, their answers back one a line within ``budget`` seconds: ``(answered,
        errors)``, the child's message for each job answered (for the caller to check), and a
        ``predictor-timeout`` or ``predictor-failed`` entry for each of the others. At the
        deadline the child is killed."""
        answered: list[tuple[Any, Any]] = []
        errors: dict[str, JSON] = {}
        started = time.monotonic()
        deadline = started + budget
        name = self.name
        if not self.lock.acquire(timeout=budget):
            since = self.busy_since
            busy = f" for {time.monotonic() - since:.0f}s" if since is not None else ""
            for job in jobs:
                errors[job.key] = PredictorTimeout(
                    f"predictor {name} is still busy{busy} with an earlier call; {job.symbol} "
                    f"not predicted within {budget:g}s (predictor_timeout)",
                    predictor=name).entry()
            return answered, errors
        self.busy_since = started
        try:
            child = self._child
            if child is None or not child.alive():
                self._stop_child()
                child = self._child = self._spawn(deadline, budget)
            if child.config is not config:
                child.send({"config": _config_snapshot(config)}, deadline)
                child.config = config
            child.send({"jobs": [{"symbol": j.symbol, "market": j.market,
                                  "sentiment": j.sentiment, "model": j.model} for j in jobs]},
                       deadline)
            for job in jobs:
                answered.append((job, child.receive(deadline)))
        except _Late:
            self._stop_child()
            for i, job in enumerate(jobs[len(answered):]):
                if i == 0:
                    message = (f"predictor {name} did not answer for {job.symbol} within "
                               f"{budget:g}s (predictor_timeout): its process was stopped")
                    logger.error("%s", message)
                else:
                    message = (f"{job.symbol} not predicted: predictor {name} used up the "
                               f"{budget:g}s budget (predictor_timeout) on the symbols before it")
                errors[job.key] = PredictorTimeout(message, predictor=name).entry()
        except _Gone as exc:
            self._stop_child()
            logger.error("predictor %s: %s; stopped (started again on the next call)", name, exc)
            for i, job in enumerate(jobs[len(answered):]):
                errors[job.key] = PredictorFailed(
                    f"predictor {name} failed for {job.symbol}: {exc}" if i == 0 else
                    f"{job.symbol} not predicted: predictor {name}'s process ended on an "
                    "earlier symbol", predictor=name, exception="ProcessEnded").entry()
        finally:
            self.busy_since = None
            self.lock.release()
        return answered, errors

    # -- the child -------------------------------------------------------------------------
    def _spawn(self, deadline: float, budget: float) -> _Child:
        """A new child with the predictor imported; under the lock."""
        try:
            child = _Child(self.command, self.line_limit)
        except OSError as exc:
            raise PredictorUnavailable(f"predictor {self.name}: cannot start its process: "
                                       f"{exc}", predictor=self.name) from exc
        try:
            child.send({"load": self.name, "directory": None if self.directory is None
                        else str(self.directory)}, deadline)
            answer = child.receive(deadline)
        except _Late:
            child.stop()
            raise PredictorUnavailable(f"predictor {self.name} did not finish importing within "
                                       f"{budget:g}s (predictor_timeout)",
                                       predictor=self.name) from None
        except _Gone as exc:
            child.stop()
            raise PredictorUnavailable(f"predictor {self.name} could not be started: {exc}",
                                       predictor=self.name) from exc
        loaded = answer.get("loaded") if isinstance(answer, dict) else None
        if not isinstance(loaded, dict):
            child.stop()
            error = answer.get("error") if isinstance(answer, dict) else None
            raise PredictorUnavailable(str(error)[:MESSAGE_LIMIT] if error else
                                       f"predictor {self.name}: its process answered "
                                       f"{str(answer)[:200]!r} to the import",
                                       predictor=self.name)
        self.form = loaded.get("form") if loaded.get("form") in ("monolith", "native") \
            else "native"
        file = loaded.get("file") if isinstance(loaded.get("file"), str) else None
        version = loaded.get("version")
        self.provenance = {"name": self.name, "form": self.form, "file": file,
                           "sha256": _sha256(file),  # of the file named, not the child's word
                           "version": None if version is None else str(version)[:100]}
        import_s = answer.get("import_s")
        self.import_s = float(import_s) if isinstance(import_s, (int, float)) else 0.0
        return child

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop()


def _wait(fd: int, event: int, seconds: float) -> bool:
    """Whether ``fd`` is ready (or hung up: the next read or write says so) within
    ``seconds``."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(1, math.ceil(seconds * 1000))))


def _sha256(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _config_snapshot(config: Any) -> Any:
    """What the child rebuilds the configuration from (:func:`config_from`): a Config's
    parts, or a plain mapping."""
    from trading.config import Config

    if isinstance(config, Config):
        return {"values": dict(config.items()),
                "sources": {k: config.source_of(k) for k, _ in config.items()},
                "file": config.file, "environ": dict(config.environ),
                "install": None if config.install is None else dict(config.install),
                "watchlists": config.watchlists}
    if isinstance(config, Mapping):
        return {"plain": dict(config)}
    return None


def config_from(snapshot: Any) -> Any:
    """The configuration a snapshot describes (in the child)."""
    from trading.config import Config

    if not isinstance(snapshot, dict):
        return None
    if "plain" in snapshot:
        return snapshot["plain"]
    return Config(snapshot["values"], snapshot["sources"], snapshot["file"],
                  snapshot["environ"], snapshot["install"], snapshot["watchlists"])


def exit_on_hang_up(fd: int) -> None:
    """In the child, on a thread of its own: exit when the service's end of the pipe closes
    (it exited, or was killed), whatever the predictor is doing."""
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
    while True:
        for _, event in poller.poll():
            if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)
