"""``trading``: the command line of trading-services.

Commands live in small modules, each with a ``register(app)``; this module only assembles
them and turns the project's expected errors into one line and an exit code.
"""

from __future__ import annotations

import sys

import typer

from trading.errors import TradingError

from . import common

app = typer.Typer(
    name="trading",
    help=("ASX market predictions from small services that systemd starts on demand.\n\n"
          "Exit codes: 0 ok, 1 failure, 2 usage or bad input, 3 service unavailable, "
          "4 timeout."),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)

_MODULES = ["services", "settings", "market", "predict", "train", "sentiment", "status"]


def _register() -> None:
    import importlib

    for name in _MODULES:
        importlib.import_module(f"trading.cli.{name}").register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=True)
    except TradingError as exc:
        common.note(f"error: {exc}")
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
