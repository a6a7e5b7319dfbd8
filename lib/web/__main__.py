"""``trading-web``, what trading-web.service runs, and ``python -m trading.web`` (the same; see
:mod:`trading.web.serve`).

The entry point, so the one place under lib/ that names the handlers: it gives the dashboard
their registry (peers without a socket run in-process, the services page lists them), as
``trading.handlers.main`` gives a handler its peers'. Nothing in the library imports this
module: the ``trading-web`` console script (pyproject's [project.scripts]) calls :func:`run`.
"""

from trading.handlers import SOCKET_SERVICES, load
from trading.web.serve import main


def run() -> int:
    """The console script ``trading-web``, which the unit runs: a script entry point skips
    ``python -m``'s runpy (about 5 ms of every activation), as the handlers' do."""
    return main(registry=load, services=list(SOCKET_SERVICES))


if __name__ == "__main__":
    raise SystemExit(run())
