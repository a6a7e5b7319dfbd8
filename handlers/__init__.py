"""Service handlers: one small module per service, each runnable as
``python -m trading.handlers.<module>`` (directly or under systemd socket activation).

:data:`SERVICES` is the registry the units, the CLI and the tests all check against. It maps
a service name to its module; modules are imported only when needed, so importing this
package costs nothing.
"""

from __future__ import annotations

import sys

SERVICES: dict[str, str] = {
    "market-data": "trading.handlers.market_data",
    "sentiment": "trading.handlers.sentiment",
    "prediction": "trading.handlers.prediction",
    "training": "trading.handlers.training",
}

# Socket-activated services that speak HTTP, not JSON-RPC: the dashboard (issue 18). The units,
# `trading status` and the tests go by SOCKET_SERVICES, which is both.
HTTP_SERVICES: dict[str, str] = {"web": "trading.web"}
SOCKET_SERVICES: dict[str, str] = {**SERVICES, **HTTP_SERVICES}


def load(name: str):
    """The service class registered as ``name`` (a :class:`trading.runtime.service.Service`)."""
    try:
        module = SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None
    __import__(module)  # importlib.import_module, without importlib (and warnings) to load
    return sys.modules[module].SERVICE


def client(cfg=None, **options):
    """A :class:`trading.runtime.client.Client` whose in-process fallback runs these handlers
    (what the CLI, the jobs and the tests use)."""
    from trading.runtime.client import Client, LocalTransport

    return Client(cfg, local=LocalTransport(load), **options)


def main(service_cls) -> int:
    """``python -m trading.handlers.X``: serve ``service_cls`` under the activation runtime,
    with this registry for peers that have no socket."""
    from trading.runtime.activation import run

    return run(service_cls, registry=load)
