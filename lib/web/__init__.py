"""The web dashboard (issue 18): the calls, a chart with the calls on it, how they turned out,
and whether the services are healthy, served over HTTP by a process that systemd starts on
the first request and that exits when idle, like every other service here.

- :mod:`trading.web.serve`: the process (the socket systemd passed, uvicorn, idle exit)
- :mod:`trading.web.audience`: who can open the dashboard at an address, and how to reach it
  (the words install.sh, ``trading status`` and ``trading web`` print)
- :mod:`trading.web.limits`: what one client cannot do to the others (request deadline,
  connection cap under the descriptor limit, a log that a flood cannot fill)
- :mod:`trading.web.app`: the ASGI app (Starlette): pages, ``/api/`` JSON, live events,
  the login and the actions
- :mod:`trading.web.guard`: what is checked before the app (Host, body size, token), the
  security headers, the login's session cookie and guess budget
- :mod:`trading.web.data`: where each page's data comes from (the store read-only, the
  services over JSON-RPC, systemd)
- ``templates/`` (Jinja2, autoescaped) and ``static/`` (CSS, two small scripts, and
  TradingView's lightweight-charts with its licence in ``static/vendor``)

Importing this package costs nothing; the page path imports no pandas, numpy or matplotlib.
"""
