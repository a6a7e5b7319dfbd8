"""``trading``: the command line of trading-services.

Commands live in small modules, each with a ``register(app)``; this module only assembles
them and turns the project's expected errors into one line and an exit code. That turn happens
inside the app (:class:`_Group`), not only in :func:`main`, so ``typer.testing.CliRunner`` sees
exactly what a shell sees.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from trading.errors import EXIT_MEANINGS, Exit, TradingError

from . import common

HELP = (
    "ASX market predictions from small services that systemd starts on demand.\n\n"
    "Start with `trading predict --source sample` (offline sample data) or `trading predict` "
    "(Yahoo Finance). Where no service socket is installed, commands run the handlers "
    "in-process and say so in one line on stderr (not when `trading stop` stopped them: "
    "--in-process runs them anyway). Commands that print data take --json.\n\n"
    "Exit codes:\n" + "\n".join(f"{int(code)} {meaning}" for code, meaning in EXIT_MEANINGS.items())
)


class _Group(TyperGroup):
    """The top-level group: an expected error (the project's own) is one line, not a traceback."""

    def invoke(self, ctx: Any) -> Any:
        common.setup_logging()
        try:
            return super().invoke(ctx)
        except TradingError as exc:
            common.note(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="trading",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)

@app.callback()
def _options(
    in_process: bool = typer.Option(
        False, "--in-process",
        help="Run every handler inside this command instead of asking its socket (also when "
             "`trading stop` stopped the services)."),
) -> None:
    common.IN_PROCESS["asked"] = in_process


# Order = order in `trading --help`: the everyday commands first, the plumbing last.
_MODULES = ["predict", "market", "sentiment", "chart", "web", "train", "status", "control",
            "schedule", "services", "settings", "notify"]


def _register() -> None:
    import importlib

    for name in _MODULES:
        importlib.import_module(f"trading.cli.{name}").register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=True)
    except TradingError as exc:  # raised outside a command (e.g. while parsing)
        common.note(f"error: {exc}")
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
