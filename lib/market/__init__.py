"""Market data: where bars come from, how they are cached, and what is computed from them.

- :mod:`.sources`: the bar sources (yahoo, sample, csv:DIR, jsonl:DIR).
- :mod:`.files`: reading a client-chosen local file: regular files only, bounded, never blocking.
- :mod:`.yahoo`: the one Yahoo adapter: error classification and messages, for bars and news.
- :mod:`.breaker`: the circuit breaker every upstream goes through (backoff in the store).
- :mod:`.bars`: the bar cache in the store, refreshed as the market moves.
- :mod:`.summary`: pure functions, bars in and summaries (technical, volume, context) out.
- :mod:`.indicators`: SMA, EMA, Wilder RSI, MACD on numpy arrays.
- :mod:`.asx`: the ASX calendar (sessions, hours, holidays).
- :mod:`.periods`: how much history: get_bars periods, lookback and indicator warm-up.
- :mod:`.symbols`: symbol normalization.
"""
