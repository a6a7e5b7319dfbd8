"""trading: ASX market predictions as small socket-activated services.

The package is the shared runtime (protocol, activation, client, store, config) plus the
domain code the services use (indicators, sources, scoring). Service handlers live in
``trading.handlers`` and the command line in ``trading.cli``.
"""

__version__ = "0.1.0"
