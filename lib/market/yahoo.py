"""Yahoo as an upstream: what its failures mean and how they read.

Bars (:mod:`trading.market.sources`) and news (:mod:`trading.news.headlines`) both ask Yahoo
through yfinance, and both meet the same failures. This module is the one place that decides
about them:

- :func:`classify` names a foreign exception ``"rate-limit"`` (yfinance's ``YFRateLimitError``,
  an HTTP 429), ``"network"`` (curl_cffi's ``DNSError``/``ConnectionError``/``Timeout``, any
  ``OSError``), ``"busy"`` (yfinance's own SQLite cache of time zones and cookies said
  "database is locked": on this machine, not at Yahoo, and gone on a retry) or None
  (anything else: a bug or a yfinance change, not Yahoo being away). It matches class
  names along the MRO, so classifying never imports yfinance or curl_cffi.
  :func:`classify_text` does the same for a failure yfinance only logged.
- :func:`message` turns either into one line for people (``yahoo unreachable: DNSError:
  Could not resolve host ...``).
- How long to leave Yahoo alone after a failure is :mod:`trading.market.breaker`'s business
  (one policy for every upstream); this module names the failure it records.
"""

from __future__ import annotations

__all__ = ["BARS", "NEWS", "classify", "classify_text", "message"]

BARS = "yahoo"               # upstream names in the ``upstream`` table
NEWS = "yahoo-news"

_NETWORK_ERRORS = {"DNSError", "ConnectionError", "Timeout", "SSLError", "ProxyError",
                   "CurlError", "TimeoutError"}


# -- what a failure means ----------------------------------------------------------------------
def classify(exc: BaseException) -> str | None:
    """``"rate-limit"``, ``"network"`` or None for an exception raised by yfinance (or by
    curl_cffi under it), most specific first."""
    names = {k.__name__ for k in type(exc).__mro__}
    if "OperationalError" in names and "locked" in str(exc):
        return "busy"
    if "YFRateLimitError" in names:
        return "rate-limit"
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) == 429 or "Too Many Requests" in str(exc):
        return "rate-limit"
    # curl_cffi's DNSError, ConnectionError and Timeout are OSErrors too, as are the builtins.
    if names & _NETWORK_ERRORS or isinstance(exc, OSError):
        return "network"
    return None


def classify_text(why: str) -> str | None:
    """:func:`classify` for a failure yfinance only logged: ``DNSError('...')``, or the bare
    text of the exception (``Failed to perform, curl: (6) Could not resolve host: ...``)."""
    import re  # not at the top: this module is on every cold health_check, failures are not

    m = re.match(r"(\w+)\(", why)
    name = m[1] if m else ""
    if name == "YFRateLimitError" or "Too Many Requests" in why:
        return "rate-limit"
    if name == "OperationalError" and "locked" in why:
        return "busy"
    if (name in _NETWORK_ERRORS or name.endswith(("ConnectionError", "Timeout"))
            or "Failed to perform, curl: (" in why):
        return "network"
    return None


def message(kind: str, why: str, what: str = "yahoo") -> str:
    """One line for people from an exception's text or yfinance's ``Name('text')`` repr;
    ``what`` names the upstream (``yahoo``, ``yahoo news``)."""
    if kind == "rate-limit":
        return f"{what} rate limit reached (HTTP 429); backing off"
    if kind == "busy":
        return f"{what}: yfinance's cache on this machine is locked by another process; try again"
    import re

    m = re.fullmatch(r"(\w+)\((['\"]?)(.*?)\2\)", why, re.S)
    text = f"{m[1]}: {m[3]}" if m else why
    # curl's text ends with "See https://curl.se/libcurl/c/libcurl-errors.html first ..."
    text = text.split(" See https://", 1)[0].strip()[:200]
    return f"{what} unreachable: {text}" if text else f"{what} unreachable"

