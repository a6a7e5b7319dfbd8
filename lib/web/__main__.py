"""``python -m trading.web``: what trading-web.service runs (see :mod:`trading.web.serve`)."""

from trading.web.serve import main

raise SystemExit(main())
