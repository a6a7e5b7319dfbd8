"""Signals and outcomes: the decision rules, the prediction log, outcome scoring, the
historical replay and the event log."""
