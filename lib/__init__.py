"""trading: ASX market predictions as small socket-activated services.

The package is layered; each layer imports only the ones above it in this list:

- :mod:`trading.errors`, :mod:`trading.config`, :mod:`trading.log`: the error tree, the
  configuration and loggers that import ``logging`` on first use, which every layer uses.
- :mod:`trading.runtime`: protocol, service base and context, activation, client, access, store.
- :mod:`trading.market`: bar sources (one Yahoo adapter), the bar cache, indicators, summaries,
  the ASX calendar, symbols.
- :mod:`trading.news`: headlines and the finance-aware sentiment scorer.
- :mod:`trading.signals`: the decision rules, the prediction log, outcomes, replay, events.
- :mod:`trading.learning`: features, walk-forward training, models, backtests.
- :mod:`trading.ops`: what only the CLI needs (the systemd manager, schedule, charts).
- :mod:`trading.web`: the dashboard, an HTTP service; its entry point gives it the handlers'
  registry (docs/architecture.md says why it lives here).

Service handlers live in ``trading.handlers`` and the command line in ``trading.cli``.
"""

__version__ = "0.1.0"
