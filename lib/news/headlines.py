"""News headlines per symbol: where they come from, the SQLite cache, and the aggregate score.

Sources (the ``source`` parameter, default the ``news_source`` setting):

- ``yahoo``: ``yfinance.Ticker(symbol).news``. Items come in two shapes, both parsed: the
  current nested one (``{"id", "content": {"title", "pubDate", "provider": {"displayName"},
  "canonicalUrl": {"url"}}}``) and the old flat one (``title``, ``publisher``, ``link``,
  ``providerPublishTime``, still returned by ``yf.Search``). Failures are Yahoo's, so
  :mod:`trading.market.yahoo` classifies them and :mod:`trading.market.breaker` keeps the
  backoff, by the bars' policy, in the store under the upstream name ``yahoo-news``, where
  every process honours it: a rate limit (429) leaves Yahoo alone for minutes (longer for
  each one in a row); a network error is retried once after a short pause, then Yahoo is left
  alone for half a minute, as after any other failure. Meanwhile the cache is served, marked
  ``stale``; with nothing cached the answer is :class:`~trading.errors.UpstreamUnavailable`
  with its ``reason`` and ``retry_after_s``. An empty list is no news, not an error.
- ``sample``: headlines bundled in ``trading/data/sample_news.jsonl``, their ages relative to
  now, so an offline run works end to end.
- ``jsonl:DIR``: every ``*.jsonl`` file in DIR, one item per line in either Yahoo shape, with
  the symbol(s) in ``symbol``/``symbols``/``relatedTickers`` or taken from the file name.
  Only regular files are read, at most :data:`MAX_JSONL_BYTES` each and
  :data:`MAX_JSONL_TOTAL` for the folder (:mod:`trading.market.files`): a FIFO, a device or
  an oversized file is a :class:`~trading.errors.NotFound` naming it, never a blocked worker.
- A market-data-only source (``csv:DIR``) has no news: the sample stands in, and the result's
  ``source`` says so.

Every headline goes through the cache (tables in ``migrations/0003_news.sql``), keyed by its id,
so a headline fetched again or about several symbols is stored once. Its score is cached with
the scorer version, so a request served from the cache never loads the lexicons.

The aggregate weights a headline by ``0.5 ** (age_hours / news_half_life_h)``; headlines older
than seven half-lives (weight under 1%) are left out. No headlines: score 0, confidence 0.

The module is long because the three sources, the cache and the aggregate share one headline
shape (:func:`parse_item`'s), which reads best in one place.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trading import clock as _clock
from trading.errors import InvalidParams, NotFound, StoreUnavailable, UpstreamUnavailable
from trading.market import breaker, yahoo
from trading.market.files import UnusableFile, read_bounded

logger = logging.getLogger(__name__)

FRESH_S = 15 * 60            # a Yahoo fetch younger than this is served from the cache
RETRY_DELAY_S = 0.5          # one short retry after a network error (then breaker.PAUSE_S)
LOOKBACK_HALF_LIVES = 7      # 0.5 ** 7 < 1%: older headlines no longer move the score
MAX_HEADLINES = 50           # most recent headlines aggregated (and returned) per symbol
KEEP_S = 90 * 24 * 3600      # headlines older than this are pruned from the cache
MAX_JSONL_BYTES = 8 << 20    # one jsonl:DIR file (parsed items take several times this)
MAX_JSONL_TOTAL = 16 << 20   # all the files of one jsonl:DIR folder together
COVERAGE_K = 2.0             # confidence reaches 63% at this much recency-weighted news

Item = dict[str, Any]


# -- parsing ---------------------------------------------------------------------------------
def _epoch(value: Any) -> int | None:
    """ISO 8601 text or Unix seconds to Unix seconds; None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and value:
        from datetime import datetime, timezone

        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp())
    return None


def _url(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else ""


def item_symbols(item: dict) -> list[str]:
    """The symbols an item names itself (unnormalised), from either shape."""
    out: list[str] = []
    for key in ("symbol", "symbols", "tickers", "relatedTickers"):
        value = item.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    content = item.get("content")
    if isinstance(content, dict):
        finance = content.get("finance")
        tickers = finance.get("stockTickers") if isinstance(finance, dict) else None
        if isinstance(tickers, list):
            out.extend(t["symbol"] for t in tickers
                       if isinstance(t, dict) and isinstance(t.get("symbol"), str))
    return out


def parse_item(item: Any, now: float) -> Item | None:
    """One news item in either Yahoo shape to ``{id, title, publisher, published, url}``.

    None for anything without a title (adverts, malformed entries): skipped, not fatal.
    """
    if not isinstance(item, dict):
        return None
    c = item.get("content") if isinstance(item.get("content"), dict) else item
    title = c.get("title")
    if not isinstance(title, str) or not title.strip():
        return None
    title = " ".join(title.split())
    provider = c.get("provider")
    publisher = (provider.get("displayName") if isinstance(provider, dict) else None) \
        or c.get("publisher") or ""
    published = (_epoch(c.get("pubDate")) or _epoch(c.get("displayTime"))
                 or _epoch(c.get("providerPublishTime")) or _epoch(c.get("published")))
    if published is None:
        published = int(now)  # hand-written files often carry no time: treat as just seen
    elif not 0 <= published <= now + 7 * 86400:
        return None  # a time far in the future (or before 1970) is a malformed item
    url = _url(c.get("canonicalUrl")) or _url(c.get("clickThroughUrl")) or _url(c.get("link")) \
        or _url(c.get("url"))
    id_ = item.get("id") or c.get("id") or item.get("uuid")
    if not isinstance(id_, (str, int)) or isinstance(id_, bool) or str(id_) == "":
        # Items without an id (hand-written files) get one from what identifies them.
        import hashlib

        digest = hashlib.sha1(f"{title}\0{publisher}\0{published}".encode()).hexdigest()
        id_ = "h:" + digest[:24]
    return {"id": str(id_)[:200], "title": title[:500], "publisher": str(publisher)[:200],
            "published": int(published), "url": url[:1000]}


# -- sources --------------------------------------------------------------------------------
class Source:
    """Where headlines come from. ``key`` names it in the cache, ``label`` in results.

    ``upstream`` names a remote source in the store's ``upstream`` table, whose backoff
    :class:`News` honours; a local source has none and is never left alone. A remote source's
    :meth:`fetch` raises :class:`~trading.errors.UpstreamUnavailable` with a ``reason``
    (``rate-limit``, ``network``) for the failures its upstream is to blame for.
    """

    key = "source"
    upstream: str | None = None
    fresh_s = 0.0  # local sources are re-read on every request (cheap); Yahoo is not

    @property
    def label(self) -> str:
        return self.key

    def fetch(self, symbol: str, now: float) -> list[Item]:
        raise NotImplementedError


def _yf_ticker(symbol: str):
    import yfinance

    return yfinance.Ticker(symbol)


class YahooNews(Source):
    """``Ticker(symbol).news``; ``ticker`` is the factory (tests pass a fake one)."""

    key = "yahoo"
    upstream = yahoo.NEWS
    fresh_s = FRESH_S

    def __init__(self, cache_dir: Path | None = None,
                 ticker: Callable[[str], Any] | None = None) -> None:
        self.cache_dir = cache_dir
        self.ticker = ticker or _yf_ticker
        self._prepared = ticker is not None

    def _prepare(self) -> None:
        # yfinance keeps a cookie/timezone cache under ~/.cache, which a sandboxed service
        # cannot write; point it at our cache directory before the first request.
        if self._prepared:
            return
        self._prepared = True
        if self.cache_dir is not None:
            import yfinance

            path = self.cache_dir / "yfinance"
            try:
                path.mkdir(parents=True, exist_ok=True)
                yfinance.set_tz_cache_location(str(path))
            except OSError as exc:
                logger.warning("cannot use %s for the yfinance cache: %s", path, exc)

    def fetch(self, symbol: str, now: float) -> list[Item]:
        self._prepare()
        try:
            raw = self.ticker(symbol).news
        except Exception as exc:  # translated when it is Yahoo's failure, not ours
            kind = yahoo.classify(exc)
            if kind is None:
                raise
            raise UpstreamUnavailable(
                yahoo.message(kind, str(exc) or type(exc).__name__, "yahoo news"),
                symbol=symbol, reason=kind) from exc
        if not raw:
            return []
        if not isinstance(raw, list):
            raise TypeError(f"Ticker.news returned {type(raw).__name__}, expected a list")
        return [p for p in (parse_item(i, now) for i in raw) if p is not None]


class SampleNews(Source):
    """Bundled headlines; ``age_h`` in the file is hours before now (on the hour)."""

    key = "sample"

    def __init__(self, stands_in_for: str | None = None) -> None:
        self.stands_in_for = stands_in_for
        self._items: list[dict] | None = None

    @property
    def label(self) -> str:
        if self.stands_in_for:
            return f"sample (no news offline for {self.stands_in_for})"
        return "sample"

    def _load(self) -> list[dict]:
        if self._items is None:
            import json
            from importlib import resources

            text = resources.files("trading.data").joinpath("sample_news.jsonl").read_text()
            self._items = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._items

    def fetch(self, symbol: str, now: float) -> list[Item]:
        anchor = int(now) - int(now) % 3600
        out = []
        for raw in self._load():
            if raw.get("symbol") != symbol:
                continue
            item = parse_item({**raw, "published": anchor - int(raw["age_h"] * 3600)}, now)
            if item is not None:
                out.append(item)
        return out


class JsonlNews(Source):
    """Every ``*.jsonl`` file in a folder; re-indexed when a file changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = f"jsonl:{folder}"
        self._stamp: tuple | None = None
        self._index: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    def _files(self) -> list[Path]:
        try:
            if self.folder.is_dir():
                return sorted(self.folder.glob("*.jsonl"))
        except (OSError, ValueError):  # a name too long, a loop of links: no such folder
            pass
        raise NotFound(f"news folder {self.folder} does not exist", path=str(self.folder))

    def _reindex(self) -> dict[str, list[dict]]:
        import json

        from trading.market.symbols import normalize

        files = self._files()
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        with self._lock:
            if stamp == self._stamp:
                return self._index
            index: dict[str, list[dict]] = {}
            budget = MAX_JSONL_TOTAL
            for path in files:
                try:
                    data = read_bounded(path, min(MAX_JSONL_BYTES, budget))
                except UnusableFile as exc:
                    why = str(exc) if budget >= MAX_JSONL_BYTES else (
                        f"{self.folder}: its *.jsonl files together are larger than the "
                        f"limit of {MAX_JSONL_TOTAL:,} bytes")
                    raise NotFound(f"cannot use news file {why}", path=str(path),
                                   reason=exc.reason) from exc
                except OSError as exc:
                    raise NotFound(f"cannot read news file {path}: {exc.strerror or exc}",
                                   path=str(path), reason="unreadable") from exc
                budget -= len(data)
                for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        raw = json.loads(line)
                    except ValueError:
                        logger.warning("%s:%d: not JSON; line skipped", path, n)
                        continue
                    if not isinstance(raw, dict):
                        continue
                    named = item_symbols(raw) or [path.stem]
                    for s in named:
                        try:
                            index.setdefault(normalize(s), []).append(raw)
                        except InvalidParams:
                            logger.debug("%s:%d: symbol %r skipped", path, n, s)
            self._stamp, self._index = stamp, index
            return index

    def fetch(self, symbol: str, now: float) -> list[Item]:
        return [p for p in (parse_item(i, now) for i in self._reindex().get(symbol, []))
                if p is not None]


def resolve(spec: Any, default: str, cache_dir: Path | None = None) -> Source:
    """A source from its name: ``yahoo``, ``sample``, ``jsonl:DIR`` (``csv:DIR``: the sample).

    ``spec`` is None (``default``) or a string: its type and length are the one rule of
    :func:`trading.handlers.params.source`, which the sentiment service applies first."""
    spec = (default if spec is None else spec).strip()
    if spec == "yahoo":
        return YahooNews(cache_dir)
    if spec == "sample":
        return SampleNews()
    if spec.startswith("jsonl:") and len(spec) > 6:
        return JsonlNews(Path(spec[6:]).expanduser().resolve())
    if spec.startswith("csv:"):
        return SampleNews(stands_in_for=spec)
    shown = spec if len(spec) <= 100 else spec[:100] + "..."
    raise InvalidParams(f"unknown news source {shown!r}: expected yahoo, sample or jsonl:DIR",
                        source=shown)


# -- the cache and the aggregate ---------------------------------------------------------------
class News:
    """Headlines for symbols through the cache. ``clock``/``sleep`` are injectable for tests."""

    def __init__(self, store, half_life_h: float, *, clock: Callable[[], float] = _clock.time,
                 sleep: Callable[[float], None] = time.sleep, scorer=None) -> None:
        self.store = store
        self.half_life_h = half_life_h
        self.clock = clock
        self.sleep = sleep
        self._scorer = scorer
        self.upstream = breaker.UpstreamState(store, "news")

    @property
    def scorer(self):
        if self._scorer is None:
            from trading.news.scoring import default_scorer

            self._scorer = default_scorer()
        return self._scorer

    # -- refresh ---------------------------------------------------------------------------
    def refresh(self, symbol: str, source: Source) -> bool:
        """Bring the cache up to date for one symbol; True when it is stale afterwards."""
        now = self.clock()
        last = self.store.query(
            "SELECT fetched_at FROM news_fetches WHERE symbol = ? AND source = ?",
            (symbol, source.key))
        if last and source.fresh_s and now - last[0]["fetched_at"] < source.fresh_s:
            return False
        if source.upstream:
            refused = self.upstream.refusal(source.upstream, now, symbol=symbol)
            if refused is not None:  # another request (or process) found it failing
                return self._stale(symbol, source, bool(last), refused)
        try:
            items = self._fetch(symbol, source, now)
        except (InvalidParams, NotFound):
            raise
        except UpstreamUnavailable as exc:  # the upstream's fault: leave it alone a while
            reason = exc.data.get("reason", "error")
            until = self._record(source, reason, exc.message)
            logger.warning("%s: news for %s unavailable: %s", source.key, symbol, exc.message)
            return self._stale(symbol, source, bool(last), exc, until)
        except Exception as exc:  # a yfinance change or a malformed answer: serve the cache
            logger.exception("%s: fetching news for %s failed", source.key, symbol)
            until = self._record(source, "error", f"{type(exc).__name__}: {exc}")
            err = UpstreamUnavailable(f"{source.key} failed: {type(exc).__name__}: {exc}",
                                      symbol=symbol, reason="error")
            return self._stale(symbol, source, bool(last), err, until)
        self.save(symbol, source.key, items, now)
        self._record(source, "ok", f"{len(items)} headlines for {symbol}")
        return False

    def _fetch(self, symbol: str, source: Source, now: float) -> list[Item]:
        try:
            return source.fetch(symbol, now)
        except UpstreamUnavailable as exc:
            if exc.data.get("reason") != "network":
                raise  # a 429 is never retried at once: Yahoo wants minutes
            self.sleep(RETRY_DELAY_S)  # transient more often than not: one short retry
            return source.fetch(symbol, self.clock())

    def _record(self, source: Source, outcome: str, message: str) -> float:
        """Record a call's outcome for a remote source; when it may be asked again."""
        if not source.upstream:
            return 0.0
        return self.upstream.record(source.upstream, outcome, message, self.clock())

    def _stale(self, symbol: str, source: Source, cached: bool, err: UpstreamUnavailable,
               until: float = 0.0) -> bool:
        """True (serve the cache, stale) when something is cached; else raise ``err`` for
        ``symbol``, with when to try again."""
        if cached:
            return True
        data = {**err.data, "symbol": symbol}
        if until > self.clock():
            data["retry_after_s"] = int(math.ceil(until - self.clock()))
        raise UpstreamUnavailable(
            f"news for {symbol} from {source.key} is unavailable and nothing is cached: "
            f"{err.message}", **data) from err

    def save(self, symbol: str, source_key: str, items: Iterable[Item], now: float) -> None:
        """Upsert headlines by id and record the fetch: one transaction."""
        items = list(items)
        with self.store.transaction() as db:
            for it in items:
                # A headline seen again keeps its cached score unless its title changed.
                db.execute(
                    "INSERT INTO news (id, title, publisher, published, url, score, scorer, "
                    "fetched_at) VALUES (:id, :title, :publisher, :published, :url, NULL, NULL, "
                    ":now) ON CONFLICT(id) DO UPDATE SET publisher = excluded.publisher, "
                    "published = excluded.published, url = excluded.url, "
                    "fetched_at = excluded.fetched_at, "
                    "score = CASE WHEN news.title = excluded.title THEN news.score END, "
                    "scorer = CASE WHEN news.title = excluded.title THEN news.scorer END, "
                    "title = excluded.title", {**it, "now": int(now)})
                db.execute("INSERT OR IGNORE INTO news_symbols (symbol, source, id) "
                           "VALUES (?, ?, ?)", (symbol, source_key, it["id"]))
            db.execute("INSERT INTO news_fetches (symbol, source, fetched_at, items) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT(symbol, source) DO UPDATE SET "
                       "fetched_at = excluded.fetched_at, items = excluded.items",
                       (symbol, source_key, int(now), len(items)))
            db.execute("DELETE FROM news WHERE published < ?", (int(now - KEEP_S),))

    # -- aggregate -------------------------------------------------------------------------
    def headlines(self, symbol: str, source_key: str, now: float) -> list[dict]:
        """Cached headlines within the lookback, newest first, each with a current score."""
        since = int(now - LOOKBACK_HALF_LIVES * self.half_life_h * 3600)
        rows = [dict(r) for r in self.store.query(
            "SELECT n.id, n.title, n.publisher, n.published, n.url, n.score, n.scorer "
            "FROM news n JOIN news_symbols s ON s.id = n.id "
            "WHERE s.symbol = ? AND s.source = ? AND n.published >= ? "
            "ORDER BY n.published DESC, n.id LIMIT ?",
            (symbol, source_key, since, MAX_HEADLINES))]
        from trading.news.scoring import VERSION

        todo = [r for r in rows if r["score"] is None or r["scorer"] != VERSION]
        if todo:
            scores = self.scorer.score_many([r["title"] for r in todo])
            for r, s in zip(todo, scores):
                r["score"], r["scorer"] = s, VERSION
            with self.store.transaction() as db:
                db.executemany("UPDATE news SET score = ?, scorer = ? WHERE id = ?",
                               [(r["score"], VERSION, r["id"]) for r in todo])
        return rows

    def _uncached(self, symbol: str, source: Source, now: float) -> list[dict]:
        """Headlines as :meth:`headlines` returns them, fetched and scored without the cache."""
        from trading.news.scoring import VERSION

        since = int(now - LOOKBACK_HALF_LIVES * self.half_life_h * 3600)
        try:
            items = self._fetch(symbol, source, now)
        except (InvalidParams, NotFound, UpstreamUnavailable):
            raise
        except Exception as exc:  # as in refresh: a source bug is the upstream's failure
            logger.exception("%s: fetching news for %s failed", source.key, symbol)
            raise UpstreamUnavailable(f"{source.key} failed: {type(exc).__name__}: {exc}",
                                      symbol=symbol, reason="error") from exc
        rows = sorted((dict(it) for it in items if it["published"] >= since),
                      key=lambda r: (-r["published"], r["id"]))[:MAX_HEADLINES]
        for r, score in zip(rows, self.scorer.score_many([r["title"] for r in rows])):
            r["score"], r["scorer"] = score, VERSION
        return rows

    def analyze(self, symbol: str, source: Source) -> dict[str, Any]:
        try:
            stale = self.refresh(symbol, source)
            now = self.clock()
            rows = self.headlines(symbol, source.key, now)
        except StoreUnavailable as exc:
            # Headlines can be fetched again: a store that is corrupt, read-only or full
            # costs the cache, not the answer.
            logger.warning("news cache unusable (%s); %s for %s straight from the source",
                           exc.data.get("cause"), source.key, symbol)
            stale, now = False, self.clock()
            rows = self._uncached(symbol, source, now)
        result = aggregate(rows, now, self.half_life_h)
        return {"symbol": symbol, **result, "as_of": _iso(now), "source": source.label,
                "stale": stale}


def aggregate(rows: list[dict], now: float, half_life_h: float) -> dict[str, Any]:
    """Recency-weighted mean score and a confidence from coverage and agreement."""
    from trading.news.scoring import label

    counts = {"positive": 0, "negative": 0, "neutral": 0}
    total_w = weighted = abs_weighted = 0.0
    headlines = []
    for r in rows:
        age_h = max(0.0, (now - r["published"]) / 3600)
        w = 0.5 ** (age_h / half_life_h)
        s = float(r["score"])
        total_w += w
        weighted += w * s
        abs_weighted += w * abs(s)
        counts[label(s)] += 1
        headlines.append({"title": r["title"], "publisher": r["publisher"],
                          "published": _iso(r["published"]), "score": round(s, 4),
                          "url": r["url"]})
    if not rows or total_w <= 0:
        score = confidence = 0.0
    else:
        score = weighted / total_w
        # Coverage: more (and fresher) news is more evidence. Agreement: headlines that
        # cancel each other out say less than headlines that point the same way.
        coverage = 1 - math.exp(-total_w / COVERAGE_K)
        agreement = abs(weighted) / abs_weighted if abs_weighted else 1.0
        confidence = coverage * (0.5 + 0.5 * agreement)
    return {"score": round(max(-1.0, min(1.0, score)), 4),
            "confidence": round(max(0.0, min(1.0, confidence)), 4),
            "headline_count": len(rows), **counts, "headlines": headlines}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
