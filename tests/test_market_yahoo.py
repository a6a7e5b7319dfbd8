"""The Yahoo adapter: one classification and one message for bars and news.

The exceptions are yfinance's and curl_cffi's real ones; nothing touches the network.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.exceptions import DNSError, HTTPError, Timeout
from yfinance.exceptions import YFRateLimitError

from trading.market.yahoo import classify, classify_text, message


@pytest.mark.parametrize("exc, kind", [
    (YFRateLimitError(), "rate-limit"),
    (HTTPError("HTTP Error 429", response=SimpleNamespace(status_code=429)), "rate-limit"),
    (RuntimeError("429 Client Error: Too Many Requests for url"), "rate-limit"),
    (DNSError("Could not resolve host: query2.finance.yahoo.com"), "network"),
    (CurlConnectionError("Failed to connect"), "network"),
    (Timeout("Operation timed out"), "network"),
    (HTTPError("HTTP Error 502", response=SimpleNamespace(status_code=502)), "network"),
    (ConnectionResetError(104, "reset"), "network"),
    (TimeoutError("timed out"), "network"),
    (KeyError("content"), None),
    (TypeError("'NoneType' object is not subscriptable"), None),
])
def test_classify(exc, kind):
    assert classify(exc) == kind


@pytest.mark.parametrize("text, kind", [
    ("YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')", "rate-limit"),
    ("DNSError('Failed to perform, curl: (6) Could not resolve host: x')", "network"),
    ("Failed to perform, curl: (7) Failed to connect to query2.finance.yahoo.com", "network"),
    ("ReadTimeout('timed out')", "network"),
    ("possibly delisted; no price data found", None),
])
def test_classify_text(text, kind):
    assert classify_text(text) == kind


def test_messages_are_one_line_for_people():
    curl = ("DNSError('Failed to perform, curl: (6) Could not resolve host: "
            "query2.finance.yahoo.com. See https://curl.se/libcurl/c/libcurl-errors.html first "
            "for more details.')")
    assert message("network", curl) == ("yahoo unreachable: DNSError: Failed to perform, "
                                        "curl: (6) Could not resolve host: "
                                        "query2.finance.yahoo.com.")
    assert message("network", "") == "yahoo unreachable"
    assert message("rate-limit", "anything", "yahoo news") == (
        "yahoo news rate limit reached (HTTP 429); backing off")


def test_classifying_imports_neither_yfinance_nor_curl():
    code = ("import sys; from trading.market.yahoo import classify, classify_text; "
            "classify(OSError()); classify_text('DNSError(\"x\")'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yfinance', 'curl_cffi', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
