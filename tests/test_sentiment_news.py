"""News sources, the headline cache and the aggregate, through a real SQLite store.

Yahoo is the only fake: a ticker factory whose ``.news`` returns items in yfinance's two real
shapes (or raises yfinance's and curl_cffi's real exceptions). Nothing touches the network.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from curl_cffi.requests.exceptions import DNSError
from yfinance.exceptions import YFRateLimitError

from trading import config
from trading.errors import InvalidParams, InvalidSymbol, NotFound, UpstreamUnavailable
from trading.market.breaker import BACKOFF_S, PAUSE_S
from trading.market.yahoo import NEWS
from trading.news.headlines import (FRESH_S, RETRY_DELAY_S, JsonlNews, News, SampleNews, YahooNews,
                                    aggregate, parse_item, resolve)
from trading.runtime.store import Store

NOW = 1_795_000_000  # 2026-11-18T11:06:40Z


def nested(id_: str, title: str, hours_ago: float, provider: str = "Reuters") -> dict:
    """An item as ``Ticker.news`` returns it (yfinance >= 0.2.48)."""
    from datetime import datetime, timezone

    pub = datetime.fromtimestamp(NOW - hours_ago * 3600, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return {"id": id_, "content": {
        "id": id_, "contentType": "STORY", "title": title, "description": "",
        "summary": f"{title}. More in the article.", "pubDate": pub, "displayTime": pub,
        "isHosted": True, "bypassModal": False, "previewUrl": None, "thumbnail": None,
        "provider": {"displayName": provider, "url": "http://www.reuters.com/"},
        "canonicalUrl": {"url": f"https://finance.yahoo.com/news/{id_}.html",
                         "site": "finance", "region": "US", "lang": "en-US"},
        "clickThroughUrl": {"url": f"https://finance.yahoo.com/news/{id_}.html"},
        "metadata": {"editorsPick": False}, "finance": {"premiumFinance": {}},
        "storyline": None}}


def flat(uuid: str, title: str, hours_ago: float, publisher: str = "Motley Fool") -> dict:
    """An item in the old flat shape (``yf.Search(q).news`` still returns it)."""
    return {"uuid": uuid, "title": title, "publisher": publisher,
            "link": f"https://au.finance.yahoo.com/news/{uuid}.html",
            "providerPublishTime": int(NOW - hours_ago * 3600), "type": "STORY",
            "thumbnail": {"resolutions": []}, "relatedTickers": ["CBA.AX"]}


class FakeYahoo:
    """``ticker(symbol).news`` answers from a script per symbol: a list, or an exception."""

    def __init__(self, script: dict[str, list]):
        self.script = script
        self.calls: list[str] = []

    def __call__(self, symbol: str):
        fake = self

        class Ticker:
            @property
            def news(self):
                fake.calls.append(symbol)
                answer = fake.script[symbol].pop(0)
                if isinstance(answer, BaseException):
                    raise answer
                return answer

        return Ticker()


class Clock:
    def __init__(self, t: float = NOW):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "trading.db")
    yield s
    s.close()


@pytest.fixture
def clock():
    return Clock()


def make_news(store, clock, half_life_h=24.0) -> News:
    return News(store, half_life_h, clock=clock, sleep=clock.sleep)


CBA_ITEMS = [
    nested("n1", "CBA shares slump after profit falls short of forecasts", 1),
    flat("f1", "Commonwealth Bank upgraded to buy by Morgans", 5),
    nested("n2", "CBA to hold annual general meeting in Brisbane", 10),
]


# -- parsing --------------------------------------------------------------------------------
def test_both_item_shapes_parse_to_the_same_fields():
    a = parse_item(nested("n1", "Title A", 2, "Reuters"), NOW)
    b = parse_item(flat("f1", "Title B", 3, "Motley Fool"), NOW)
    assert a == {"id": "n1", "title": "Title A", "publisher": "Reuters",
                 "published": NOW - 7200, "url": "https://finance.yahoo.com/news/n1.html"}
    assert b == {"id": "f1", "title": "Title B", "publisher": "Motley Fool",
                 "published": NOW - 10800, "url": "https://au.finance.yahoo.com/news/f1.html"}


def test_items_without_a_title_are_skipped_and_ids_are_made_when_missing():
    assert parse_item({"id": "x", "content": {"contentType": "AD"}}, NOW) is None
    assert parse_item("junk", NOW) is None
    one = parse_item({"title": "Hand-written", "publisher": "me", "published": NOW}, NOW)
    two = parse_item({"title": "Hand-written", "publisher": "me", "published": NOW}, NOW)
    assert one["id"] == two["id"] and one["id"].startswith("h:")


# -- yahoo through the cache ----------------------------------------------------------------------
def test_yahoo_analyze_with_both_shapes(store, clock):
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS)]})
    r = make_news(store, clock).analyze("CBA.AX", YahooNews(ticker=fake))
    assert r["symbol"] == "CBA.AX" and r["source"] == "yahoo" and r["stale"] is False
    assert r["headline_count"] == 3
    assert (r["positive"], r["negative"], r["neutral"]) == (1, 1, 1)
    assert [h["title"] for h in r["headlines"]] == [i.get("title") or i["content"]["title"]
                                                      for i in CBA_ITEMS]
    slump = r["headlines"][0]
    assert slump["score"] < 0 and slump["publisher"] == "Reuters"
    assert slump["published"] == "2026-11-18T10:06:40Z"
    assert r["headlines"][1]["url"] == "https://au.finance.yahoo.com/news/f1.html"
    assert -1 <= r["score"] <= 1 and 0 < r["confidence"] <= 1


def test_a_fresh_fetch_is_served_from_the_cache(store, clock):
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS), list(CBA_ITEMS)]})
    news = make_news(store, clock)
    first = news.analyze("CBA.AX", YahooNews(ticker=fake))
    clock.t += FRESH_S - 1
    second = news.analyze("CBA.AX", YahooNews(ticker=fake))
    assert fake.calls == ["CBA.AX"]
    assert second["headlines"] == first["headlines"] and second["stale"] is False
    clock.t += 2
    news.analyze("CBA.AX", YahooNews(ticker=fake))
    assert fake.calls == ["CBA.AX", "CBA.AX"]


def test_cache_deduplicates_by_id(store, clock):
    again = [nested("n1", "CBA shares slump after profit falls short of forecasts", 1),
             nested("n3", "CBA names new chief risk officer", 0.5)]
    shared = nested("s1", "Big four banks rally as bond yields fall", 2)
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS) + [shared], again],
                      "NAB.AX": [[shared]]})
    news = make_news(store, clock)
    src = YahooNews(ticker=fake)
    news.analyze("CBA.AX", src)
    news.analyze("NAB.AX", src)
    clock.t += FRESH_S + 1
    r = news.analyze("CBA.AX", src)
    ids = [row["id"] for row in store.query("SELECT id FROM news ORDER BY id")]
    assert ids == ["f1", "n1", "n2", "n3", "s1"]  # n1 twice and s1 for two symbols: once each
    links = store.query("SELECT symbol FROM news_symbols WHERE id = 's1' ORDER BY symbol")
    assert [row["symbol"] for row in links] == ["CBA.AX", "NAB.AX"]
    assert r["headline_count"] == 5


def test_changed_title_is_rescored(store, clock):
    news = make_news(store, clock)
    news.save("CBA.AX", "yahoo", [parse_item(nested("n1", "CBA shares surge", 1), NOW)], NOW)
    assert news.headlines("CBA.AX", "yahoo", NOW)[0]["score"] > 0
    news.save("CBA.AX", "yahoo", [parse_item(nested("n1", "CBA shares plunge", 1), NOW)], NOW)
    rows = news.headlines("CBA.AX", "yahoo", NOW)
    assert len(rows) == 1 and rows[0]["score"] < 0


def test_rate_limit_backs_off_and_serves_the_cache_stale(store, clock):
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS), YFRateLimitError(), list(CBA_ITEMS)]})
    news = make_news(store, clock)
    fresh = news.analyze("CBA.AX", YahooNews(ticker=fake))
    clock.t += FRESH_S + 1
    r = news.analyze("CBA.AX", YahooNews(ticker=fake))
    assert r["stale"] is True and r["headlines"] == fresh["headlines"]
    until = store.query("SELECT backoff_until FROM upstream WHERE source = ?", (NEWS,))[0][0]
    assert until == clock.t + BACKOFF_S
    # Inside the backoff nobody asks Yahoo, not even another process (a new News object).
    clock.t += BACKOFF_S - 10
    assert make_news(store, clock).analyze("CBA.AX", YahooNews(ticker=fake))["stale"] is True
    assert len(fake.calls) == 2
    clock.t += 11
    assert news.analyze("CBA.AX", YahooNews(ticker=fake))["stale"] is False
    assert len(fake.calls) == 3
    assert clock.sleeps == []  # a 429 is never retried at once


def test_rate_limit_with_nothing_cached_is_upstream_unavailable(store, clock):
    fake = FakeYahoo({"BHP.AX": [YFRateLimitError()]})
    with pytest.raises(UpstreamUnavailable) as info:
        make_news(store, clock).analyze("BHP.AX", YahooNews(ticker=fake))
    assert info.value.problem == "upstream-unavailable"
    assert info.value.data["reason"] == "rate-limit" and info.value.data["symbol"] == "BHP.AX"
    assert info.value.data["retry_after_s"] == BACKOFF_S
    assert isinstance(info.value.__cause__.__cause__, YFRateLimitError)


def test_a_backoff_recorded_by_another_process_is_honoured(store, clock):
    # Process A is rate-limited; process B opens the same SQLite file with a store of its own.
    a = FakeYahoo({"CBA.AX": [YFRateLimitError()]})
    with pytest.raises(UpstreamUnavailable):
        make_news(store, clock).analyze("CBA.AX", YahooNews(ticker=a))
    other = Store(store.path)
    try:
        b = FakeYahoo({"CBA.AX": [list(CBA_ITEMS)], "NAB.AX": [list(CBA_ITEMS)]})
        news_b = make_news(other, clock)
        clock.t += BACKOFF_S - 1
        for symbol in ("CBA.AX", "NAB.AX"):  # a backoff is Yahoo's, not one symbol's
            with pytest.raises(UpstreamUnavailable) as info:
                news_b.analyze(symbol, YahooNews(ticker=b))
            assert info.value.data["reason"] == "rate-limit"
            assert info.value.data["retry_after_s"] == 1
        assert b.calls == []
        clock.t += 1
        assert news_b.analyze("CBA.AX", YahooNews(ticker=b))["headline_count"] == 3
        assert b.calls == ["CBA.AX"]
        # The success clears the backoff for everyone, process A included.
        assert make_news(store, clock).upstream.refusal(NEWS, clock.t) is None
    finally:
        other.close()


def test_network_error_is_retried_once_after_a_short_pause(store, clock):
    fake = FakeYahoo({"CBA.AX": [DNSError("Could not resolve host: query2.finance.yahoo.com"),
                                 list(CBA_ITEMS)]})
    r = make_news(store, clock).analyze("CBA.AX", YahooNews(ticker=fake))
    assert r["stale"] is False and r["headline_count"] == 3
    assert clock.sleeps == [RETRY_DELAY_S] and len(fake.calls) == 2


def test_network_down_serves_cache_stale_or_fails_without_cache(store, clock):
    down = [ConnectionResetError(104, "reset"), TimeoutError("timed out")]
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS), *down], "NAB.AX": list(down)})
    news = make_news(store, clock)
    news.analyze("CBA.AX", YahooNews(ticker=fake))
    clock.t += FRESH_S + 1
    assert news.analyze("CBA.AX", YahooNews(ticker=fake))["stale"] is True
    with pytest.raises(UpstreamUnavailable) as info:
        news.analyze("NAB.AX", YahooNews(ticker=fake))
    assert info.value.data["reason"] == "network"
    # A network error sets no backoff, only the short pause (NAB.AX was not even asked).
    row = store.query("SELECT outcome, backoff_until, failures FROM upstream WHERE source = ?",
                      (NEWS,))[0]
    assert tuple(row) == ("network", clock.t + PAUSE_S, 0)
    assert fake.calls == ["CBA.AX", "CBA.AX", "CBA.AX"]


def test_network_down_is_not_retried_for_every_symbol(store, clock):
    fake = FakeYahoo({"CBA.AX": [DNSError("no DNS"), DNSError("no DNS")],
                      "NAB.AX": [list(CBA_ITEMS)]})
    news = make_news(store, clock)
    with pytest.raises(UpstreamUnavailable):
        news.analyze("CBA.AX", YahooNews(ticker=fake))
    with pytest.raises(UpstreamUnavailable):
        news.analyze("NAB.AX", YahooNews(ticker=fake))  # within the pause: Yahoo not asked
    assert fake.calls == ["CBA.AX", "CBA.AX"]
    clock.t += PAUSE_S + 1
    assert news.analyze("NAB.AX", YahooNews(ticker=fake))["headline_count"] == 3


def test_unexpected_upstream_error_serves_the_cache(store, clock):
    fake = FakeYahoo({"CBA.AX": [list(CBA_ITEMS), KeyError("content")]})
    news = make_news(store, clock)
    news.analyze("CBA.AX", YahooNews(ticker=fake))
    clock.t += FRESH_S + 1
    assert news.analyze("CBA.AX", YahooNews(ticker=fake))["stale"] is True


def test_empty_news_is_neutral_with_no_confidence(store, clock):
    fake = FakeYahoo({"WTC.AX": [[]]})
    r = make_news(store, clock).analyze("WTC.AX", YahooNews(ticker=fake))
    assert (r["score"], r["confidence"], r["headline_count"], r["stale"]) == (0.0, 0.0, 0, False)
    assert r["headlines"] == [] and (r["positive"], r["negative"], r["neutral"]) == (0, 0, 0)


# -- recency ------------------------------------------------------------------------------------
def test_recency_weighting_uses_the_half_life():
    rows = [{"title": "a", "publisher": "", "url": "", "score": 0.8, "published": NOW},
            {"title": "b", "publisher": "", "url": "", "score": -0.8, "published": NOW - 24 * 3600}]
    assert aggregate(rows, NOW, 24.0)["score"] == pytest.approx((0.8 - 0.4) / 1.5, abs=1e-4)
    assert aggregate(rows, NOW, 6.0)["score"] == pytest.approx((0.8 - 0.8 / 16) / (1 + 1 / 16),
                                                               abs=1e-4)
    assert abs(aggregate(rows, NOW, 10_000.0)["score"]) < 0.01


def test_confidence_grows_with_news_and_agreement():
    def row(score, hours):
        return {"title": "t", "publisher": "", "url": "", "score": score,
                "published": NOW - hours * 3600}

    one = aggregate([row(0.6, 1)], NOW, 24)["confidence"]
    three = aggregate([row(0.6, 1), row(0.5, 2), row(0.7, 3)], NOW, 24)["confidence"]
    split = aggregate([row(0.6, 1), row(-0.6, 2), row(0.6, 3)], NOW, 24)["confidence"]
    old = aggregate([row(0.6, 100)], NOW, 24)["confidence"]
    assert 0 < old < one < three <= 1
    assert split < three


def test_headlines_older_than_the_lookback_are_left_out(store, clock):
    news = make_news(store, clock, half_life_h=1.0)  # lookback 7 hours
    news.save("CBA.AX", "yahoo", [parse_item(nested("old", "CBA shares plunge", 8), NOW),
                                  parse_item(nested("new", "CBA shares surge", 1), NOW)], NOW)
    assert [r["id"] for r in news.headlines("CBA.AX", "yahoo", NOW)] == ["new"]


# -- local sources ------------------------------------------------------------------------------
def test_jsonl_folder_source(tmp_path, store, clock):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "CBA.AX.jsonl").write_text(
        json.dumps(nested("j1", "CBA shares surge on record profit", 2)) + "\n"
        + "not json\n\n"
        + json.dumps(flat("j2", "CBA shares fall after guidance cut", 3)) + "\n")
    (folder / "mixed.jsonl").write_text(
        json.dumps({"symbol": "bhp", "title": "BHP beats production forecasts",
                    "publisher": "me", "published": "2026-11-18T05:00:00Z"}) + "\n"
        + json.dumps({"symbols": ["../x"], "title": "ignored"}) + "\n")
    src = resolve(f"jsonl:{folder}", "yahoo")
    assert isinstance(src, JsonlNews)
    news = make_news(store, clock)
    cba = news.analyze("CBA.AX", src)
    # flat items name relatedTickers CBA.AX themselves; the nested one takes the file name
    assert {h["title"] for h in cba["headlines"]} == {"CBA shares surge on record profit",
                                                       "CBA shares fall after guidance cut"}
    bhp = news.analyze("BHP.AX", src)
    assert bhp["headline_count"] == 1 and bhp["score"] > 0
    assert bhp["source"] == f"jsonl:{folder}"
    with pytest.raises(NotFound):
        news.analyze("CBA.AX", resolve(f"jsonl:{tmp_path / 'missing'}", "yahoo"))


def test_sample_source_and_csv_stand_in(store, clock):
    news = make_news(store, clock)
    r = news.analyze("CBA.AX", resolve("sample", "yahoo"))
    assert r["source"] == "sample" and r["headline_count"] >= 3 and r["confidence"] > 0
    stand_in = resolve("csv:/data/asx", "yahoo")
    assert isinstance(stand_in, SampleNews)
    r2 = news.analyze("CBA.AX", stand_in)
    assert r2["source"] == "sample (no news offline for csv:/data/asx)"
    assert r2["score"] == r["score"]
    assert news.analyze("ZZZ.AX", resolve("sample", "yahoo"))["confidence"] == 0


@pytest.mark.parametrize("spec", ["ftp", "", "jsonl:"])
def test_unknown_sources_are_refused(spec):
    with pytest.raises(InvalidParams):
        resolve(spec, "yahoo")


@pytest.mark.parametrize("spec", [3, ["yahoo"], "x" * 5000])
def test_a_source_that_is_not_a_short_string_is_refused_by_the_one_rule(spec):
    from trading.handlers.sentiment import Sentiment

    with pytest.raises(InvalidParams):
        Sentiment().analyze_sentiment("CBA", source=spec)


def test_default_source_comes_from_config(monkeypatch):
    monkeypatch.setenv("TRADING_NEWS_SOURCE", "sample")
    config.reset()
    from trading.handlers.sentiment import Sentiment

    r = Sentiment().analyze_sentiment("cba")
    assert r["source"] == "sample" and r["symbol"] == "CBA.AX"


# -- the service methods in-process ---------------------------------------------------------
def test_half_life_setting_reaches_the_service(monkeypatch, tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    import time

    now = time.time()
    lines = [{"id": "p", "symbol": "CBA", "title": "CBA shares surge", "published": now - 3600},
             {"id": "n", "symbol": "CBA", "title": "CBA shares plunge",
              "published": now - 20 * 3600}]
    (folder / "x.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    from trading.handlers.sentiment import Sentiment

    scores = {}
    for hl in ("2", "1000"):
        monkeypatch.setenv("TRADING_NEWS_HALF_LIFE_H", hl)
        config.reset()
        svc = Sentiment()
        scores[hl] = svc.analyze_sentiment("CBA", source=f"jsonl:{folder}")["score"]
        svc.close()
    assert scores["2"] > 0.5 > scores["1000"]


@pytest.mark.parametrize("bad", ["../etc/passwd", "CBA;DROP TABLE news", "", "a b", "C/BA",
                                 "TOOLONGSYMBOL.AX", 7, None])
def test_bad_symbols_are_rejected(bad):
    from trading.handlers.sentiment import Sentiment

    with pytest.raises(InvalidSymbol):
        Sentiment().analyze_sentiment(bad, source="sample")


def test_bulk_reports_bad_symbols_by_the_name_given():
    from trading.handlers.sentiment import Sentiment

    out = Sentiment().analyze_bulk(["cba", "../x", "CBA.AX", "^axjo"], source="sample")
    assert list(out["results"]) == ["CBA.AX", "^AXJO"]
    assert out["errors"]["../x"]["problem"] == "invalid-symbol"
    assert out["errors"]["../x"]["code"] == -32602
    for r in out["results"].values():
        assert set(r) == {"symbol", "score", "confidence", "headline_count", "positive",
                          "negative", "neutral", "headlines", "as_of", "source", "stale"}


@pytest.mark.parametrize("params", [{"symbols": []}, {"symbols": {"CBA": 1}},
                                    {"symbols": ["CBA"], "source": "nope"}])
def test_bulk_bad_params(params):
    from trading.handlers.sentiment import Sentiment

    with pytest.raises(InvalidParams):
        Sentiment().analyze_bulk(**params)


@pytest.mark.parametrize("texts", ["one string", [1, 2], ["ok", None], {"a": 1}, ["x" * 3000]])
def test_score_text_bad_input(texts):
    from trading.handlers.sentiment import Sentiment

    with pytest.raises(InvalidParams):
        Sentiment().score_text(texts)


def test_score_text_one_score_per_text():
    from trading.handlers.sentiment import Sentiment

    out = Sentiment().score_text(["CBA shares slump after profit falls short of forecasts",
                                  "BHP beats estimates", ""])
    assert len(out["scores"]) == 3
    assert out["scores"][0] < 0 < out["scores"][1] and out["scores"][2] == 0
    assert Sentiment().score_text([]) == {"scores": []}


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.lists(st.text(max_size=5), max_size=3))
_keys = st.sampled_from(["id", "uuid", "title", "publisher", "link", "providerPublishTime",
                         "pubDate", "displayTime", "provider", "canonicalUrl", "symbol"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, st.one_of(_values, st.dictionaries(_keys, _values, max_size=4)),
                       max_size=8), st.booleans())
def test_parse_item_never_crashes(raw, wrap):
    item = parse_item({"content": raw} if wrap else raw, NOW)
    if item is not None:
        assert set(item) == {"id", "title", "publisher", "published", "url"}
        assert all(isinstance(item[k], str) for k in ("id", "title", "publisher", "url"))
        assert 0 <= item["published"] <= NOW + 7 * 86400
