"""Signals and outcomes: the decision rules, the prediction log, outcome scoring, the
historical replay and the event log.

- :mod:`.rules`: BUY/SELL/HOLD from market data, sentiment and a model probability.
- :mod:`.ledger`: the prediction log (record, latest, history).
- :mod:`.outcomes`: outcome scoring (evaluate) and the accuracy report.
- :mod:`.replay`: the historical replay behind ``trading replay``.
- :mod:`.events`: the event log and its Redis publisher.
"""
