"""A client-chosen folder (``csv:DIR``, ``jsonl:DIR``) holding a FIFO, a device or a huge file:
a clear error for that symbol, at once and in bounded memory, and nobody else waits (issue 14).

Real FIFOs, a real ``/dev/zero`` symlink, a real handler process on a real socket.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PYTHON
from support.wire import rpc
from trading.errors import NotFound
from trading.market.sources import MAX_CSV_BYTES, CsvSource, parse_csv


def _release(fifo: Path) -> None:
    """Give a reader blocked in open() its writer and EOF (frees today's stuck worker)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is reading it: nothing to release


def _timed(call, *args, **kwargs):
    t0 = time.monotonic()
    try:
        return call(*args, **kwargs), time.monotonic() - t0
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc, time.monotonic() - t0


def test_a_fifo_in_a_csv_folder_is_an_error_at_once_and_blocks_no_one(activate, tmp_path):
    folder = tmp_path / "feed"
    folder.mkdir()
    fifo = folder / "CBA.AX.csv"
    os.mkfifo(fifo)
    h = activate("market-data", idle_exit=60)
    assert rpc(h.path, "health_check")["result"]["status"] == "ok"
    answers: dict[str, tuple] = {}

    def ask(name, params):
        answers[name] = _timed(rpc, h.path, "get_market_data", params, timeout=8)

    try:
        hostile = threading.Thread(target=ask, args=("fifo", {"symbol": "CBA",
                                                             "source": f"csv:{folder}"}))
        hostile.start()
        time.sleep(0.3)  # the hostile request is in its fetch first
        legit = threading.Thread(target=ask, args=("sample", {"symbol": "NAB",
                                                              "source": "sample"}))
        legit.start()
        legit.join(10)
        hostile.join(10)
    finally:
        _release(fifo)
    answer, took = answers["fifo"]
    assert isinstance(answer, dict), f"no answer for the FIFO: {answer!r}"
    assert took < 1.0
    error = answer["error"]
    assert error["code"] == -32001 and error["data"]["reason"] == "not-a-regular-file"
    assert str(fifo) in error["message"] and "FIFO" in error["message"]
    answer, took = answers["sample"]
    assert isinstance(answer, dict) and answer["result"]["symbol"] == "NAB.AX", answer
    assert took < 5.0


_CHILD = """
import json, resource, sys, time
from trading.handlers.market_data import MarketData
svc = MarketData()
t0 = time.monotonic()
out = svc.bulk_fetch(["CBA"], source="csv:" + sys.argv[1])
took = time.monotonic() - t0
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big pytest
# process would report its parent's peak; VmHWM belongs to this process's own memory.
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({"errors": out["errors"], "took": took, "maxrss_kb": peak}))
"""


def test_a_csv_linked_to_dev_zero_is_an_error_in_bounded_memory(tmp_path):
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "CBA.AX.csv").symlink_to("/dev/zero")

    def cap():  # today's code reads /dev/zero until this limit stops it, not for ever
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run([PYTHON, "-c", _CHILD, str(folder)], capture_output=True, text=True,
                          timeout=60, preexec_fn=cap, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.splitlines()[-1])
    error = out["errors"]["CBA"]
    assert error["problem"] == "not-found" and "character device" in error["message"]
    assert out["took"] < 1.0
    assert out["maxrss_kb"] < 300 * 1024  # an interpreter with numpy, not a gigabyte of zeros


def test_an_oversized_csv_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "CBA.AX.csv"
    with open(path, "wb") as f:
        f.write(b"Date,Open,High,Low,Close,Volume\n")
        f.truncate(MAX_CSV_BYTES + 1)  # sparse: costs no disk
    got = CsvSource(tmp_path).fetch(["CBA.AX"], None, None)
    assert isinstance(got.errors["CBA.AX"], NotFound)
    assert got.errors["CBA.AX"].data["reason"] == "too-large"
    assert "20,971,520 bytes" in got.errors["CBA.AX"].message
    (tmp_path / "small.csv").write_text("Date,Close\n2026-01-05,1.5\n")
    assert list(parse_csv(tmp_path / "small.csv").close) == [1.5]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_bad_file_in_a_jsonl_news_folder_is_an_error_at_once(tmp_path, kind):
    from trading.handlers.sentiment import Sentiment

    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "BHP.jsonl").write_text('{"title": "BHP lifts its dividend"}\n')
    bad = folder / "CBA.jsonl"
    if kind == "fifo":
        os.mkfifo(bad)
    elif kind == "dev-zero":
        bad.symlink_to("/dev/zero")
    else:
        bad.mkdir()
    svc = Sentiment()
    box: list = []
    worker = threading.Thread(target=lambda: box.append(_timed(
        svc.analyze_bulk, ["CBA", "BHP"], source=f"jsonl:{folder}")), daemon=True)
    worker.start()
    worker.join(5)
    if kind == "fifo":
        _release(bad)
    worker.join(5)
    svc.close()
    assert box, "analyze_bulk never returned"
    out, took = box[0]
    assert isinstance(out, dict), out
    assert took < 1.0
    assert set(out["errors"]) == {"CBA", "BHP"}  # the folder is unusable as a whole
    error = out["errors"]["CBA"]
    assert error["problem"] == "not-found" and str(bad) in error["message"]
    assert "not a regular file" in error["message"]


@pytest.mark.slow
def test_a_csv_of_a_million_rows_is_read_in_bounded_memory(tmp_path):
    """Just under the size limit: 900,000 one-minute rows (decoding the text whole and a
    tuple per row peaked above 300 MB); streamed into arrays it stays well under 200 MB."""
    import datetime as dt

    from trading.market import asx

    folder = tmp_path / "feed"
    folder.mkdir()
    minutes = [f"{10 + m // 60:02d}:{m % 60:02d}" for m in range(360)]
    with open(folder / "CBA.AX.csv", "w") as f:
        f.write("Date,Close\n")
        size, day = 0, dt.date(2010, 1, 4)
        while size < MAX_CSV_BYTES - (1 << 20):
            if asx.is_session(day):
                chunk = "".join(f"{day} {t},{100 + i % 7}.25\n" for i, t in enumerate(minutes))
                f.write(chunk)
                size += len(chunk)
            day += dt.timedelta(days=1)
    proc = subprocess.run([PYTHON, "-c", _CHILD, str(folder)], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["errors"] == {}
    assert out["maxrss_kb"] < 200 * 1024, out
