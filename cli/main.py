"""``trading``: the command line of trading-services.

Commands live in small modules, each with a ``register(app)``; :data:`COMMANDS` names them and
this module assembles them lazily and turns the project's expected errors into one line and an
exit code. That turn happens inside the app (:class:`_Group`), not only in :func:`main`, so
``typer.testing.CliRunner`` sees exactly what a shell sees.

Lazy, because every command is a fresh interpreter (a timer runs one every 30 minutes): a
command imports only its own module, and ``trading --help`` lists every command from the
table without importing any (tests/test_cli_lazy.py keeps the table's help equal to each
command's own).
"""

from __future__ import annotations

import importlib
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
    "\b\nExit codes:\n" + "\n".join(f"{int(code)} {meaning}" for code, meaning in EXIT_MEANINGS.items())
)


# Command name -> (module in trading.cli whose register(app) defines it, its one-line help).
# Order = order in `trading --help`: the everyday commands first, the plumbing last. A new
# command module plugs in with one line here; it is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("predict", "Predict BUY/SELL/HOLD for ASX symbols and store the predictions."),
    "report": ("predict", "The scorecard: BUY/SELL and HOLD hit rates with 95% intervals beside "
                          "baselines over the same sessions, and how well the stated probability "
                          "of being right is calibrated."),
    "events": ("predict", "Print the latest events (predictions, outcomes); --follow keeps "
                          "printing new ones."),
    "explain": ("predict", "The whole reasoning of a symbol's latest prediction: inputs, "
                           "components, weights, thresholds, calibration, model and provenance."),
    "history": ("predict", "Stored predictions of one stream, newest first, with their "
                           "outcomes so far (default: the live stream of the configured "
                           "predictor; the others are named below the table)."),
    "replay": ("predict", "Replay history: predict each session from the bars up to it, then "
                          "score the outcomes."),
    "market": ("market", "Price, RSI, MACD, volume and the market context for each symbol "
                         "(one fetch for all)."),
    "sentiment": ("sentiment", "Recency-weighted news sentiment per symbol: score -1..1 and "
                               "confidence 0..1."),
    "chart": ("chart", "Chart a symbol: price with SMA20, RSI and MACD panes, stored "
                       "predictions marked."),
    "web": ("web", "Serve the web dashboard in the foreground until Ctrl-C (installed, systemd "
                   "starts it on demand instead: see `trading status`)."),
    "train": ("train", "Train a model with walk-forward validation and register it (not "
                       "activated)."),
    "models": ("train", "List registered models, newest first (* marks the active one)."),
    "activate": ("train", "Make a model the one predictions use (refused unless its "
                          "Brier skill out of sample against the walk-forward base rate has a "
                          "95% interval above zero, or --force)."),
    "backtest": ("train", "Replay history day by day through the predictor and score the "
                          "signals."),
    "status": ("status", "Show each service's socket (listening or failed), handler (active "
                         "or idle), PID, memory and socket path, and the timers with their "
                         "next run."),
    "start": ("control", "Start the sockets (and the timers): the services answer on demand "
                         "again."),
    "stop": ("control", "Stop the sockets and any running handler (and the timers): nothing "
                        "answers."),
    "restart": ("control", "Make the next request run the current code and configuration "
                           "(after an upgrade or a config change)."),
    "schedule": ("schedule", "Each timer, what it runs, and its last and next run in Sydney "
                             "time and UTC."),
    "job": ("schedule", "Run a scheduled job if the ASX calendar says so (what the timers "
                        "start)."),
    "serve": ("services", "Run one service in the foreground (for development; systemd runs "
                          "them in production)."),
    "call": ("services", "Call one method and print its result as JSON; an error is one line "
                         "and a non-zero exit."),
    "logs": ("services", "Show a service's log from the journal (journalctl)."),
    "config": ("settings", "Show the configuration (file, TRADING_* variables, defaults)."),
    "notify": ("notify", "Alerts: test the notify.urls, show the outbox."),
}


def load_command(name: str) -> Any:
    """The click command ``name`` as its module defines it (the module is imported now)."""
    import typer.main

    module = importlib.import_module(f"trading.cli.{COMMANDS[name][0]}")
    holder = typer.Typer(rich_markup_mode=None)  # plain help, as the app's (see below)
    module.register(holder)
    return typer.main.get_group(holder).commands[name]


class _Group(TyperGroup):
    """The top-level group: each command loaded from :data:`COMMANDS` when it runs, and an
    expected error (the project's own) as one line, not a traceback."""

    _listing = False  # while the help is drawn, the table's line stands in for each command

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        if self._listing:
            from typer.core import TyperCommand

            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command with its whole line (wrapped), not cut to the terminal's width."""
        rows = [(name, COMMANDS[name][1] if name in COMMANDS
                 else self.commands[name].get_short_help_str(200))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        common.setup_logging()
        try:
            return super().invoke(ctx)
        except TradingError as exc:
            common.note(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C: 130 whatever typer (or click) would make of it
            print(file=sys.stderr)
            raise typer.Exit(Exit.INTERRUPTED) from None


app = typer.Typer(
    name="trading",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    # Plain help: typer's rich help imports rich and markdown-it first, 0.15-0.3 s on a
    # 2-core machine, more than the rest of `trading --help` (bench/bench_cli.py).
    rich_markup_mode=None,
)

@app.callback()
def _options(
    in_process: bool = typer.Option(
        False, "--in-process",
        help="Run every handler inside this command instead of asking its socket (also when "
             "`trading stop` stopped the services)."),
) -> None:
    common.IN_PROCESS["asked"] = in_process


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
