"""The runtime every service shares, and nothing domain-specific.

- :mod:`.protocol`: JSON-RPC 2.0 framing (one bounded line buffer for both ends) and dispatch.
- :mod:`.service`: the base class of a service and the context it is built with.
- :mod:`.server`: serving one service on listening sockets until idle.
- :mod:`.activation`: adopting the sockets systemd passed, the production context, the entry point.
- :mod:`.client`: calling a service over its socket, or in-process through a transport.
- :mod:`.access`: which peers may talk to a service.
- :mod:`.store`: the shared SQLite store and its migrations.

Nothing here imports ``trading.handlers``: the handlers depend on the runtime, never the
other way round.
"""
