"""``trading notify test|status``: check the alert URLs, and show the outbox.

Alerts themselves are sent by the scheduled jobs (``trading job predict`` and ``trading job
outcomes``; :mod:`trading.ops.notify`), and by ``trading predict --notify``. ``test`` sends
one test message to every URL in ``notify.urls`` and prints one line per URL: ``delivered``
or the error (exit 1 when any failed). ``status`` reads the outbox in the store: what waits
(with the attempt count, the last error and the next try), what was given up, and the latest
sent or superseded. URLs are printed masked.
Apprise is imported by ``test`` only.
"""

from __future__ import annotations

import typer

from trading import config as _config

from . import common

notify_app = typer.Typer(help="Alerts: test the notify.urls, show the outbox.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def test(as_json: bool = common.JsonOption,
         timeout: float = typer.Option(None, "--timeout", min=0.1,
                                       help="Seconds per URL (default: notify.timeout).")) -> None:
    """Send a test message to each configured URL; one line per URL: delivered, or the error."""
    cfg = _config.get()
    if not cfg["notify.urls"]:
        raise common.fail("no notify.urls configured: add Apprise URLs to the configuration "
                          "(see `trading config show`)")
    from trading.ops import notify

    results = notify.test(cfg, timeout=timeout)
    if as_json:
        common.print_json([{"target": t, "delivered": e is None, "error": e}
                           for t, e in results])
    else:
        for target, error in results:
            print(f"{target}: " + ("delivered" if error is None else f"failed: {error}"))
    if any(e is not None for _, e in results):
        raise typer.Exit(common.EXIT_FAILURE)


@notify_app.command("status")
def status(as_json: bool = common.JsonOption,
           sent: int = typer.Option(10, "--sent", min=0, max=1000,
                                    help="How many of the latest sent messages to list.")) -> None:
    """The outbox: pending (with attempts, last error, next try), failed, and the latest sent
    or superseded (a message a newer run replaced before it could be sent)."""
    from trading.runtime.store import Store
    from trading.signals import outbox

    cfg = _config.get()
    state = outbox.status(Store(cfg.db_path), sent_limit=sent)
    state["urls"] = len(cfg["notify.urls"])
    if as_json:
        common.print_json(state)
        return
    c = state["counts"]
    print(f"outbox: {c['pending']} pending, {c['sending']} sending, {c['failed']} failed, "
          f"{c['sent']} sent, {c['superseded']} superseded; {state['urls']} URL(s) configured")
    if not state["rows"]:
        return
    rows = []
    for r in state["rows"]:
        if r["status"] == "sent":
            when = f"sent {r['sent_at'][:19]}"
        elif r["status"] == "pending":
            when = f"next try {r['next_attempt_at'][:19]}"
        elif r["status"] == "sending":
            when = f"claimed {r['claimed_at'][:19]}"
        elif r["status"] == "superseded":
            when = "superseded: a newer run spoke"
        else:
            when = "given up"
        rows.append([r["id"], r["status"], r["title"], r["notify_type"], r["target"],
                     r["attempts"], when,
                     "" if r["status"] == "superseded" else r["last_error"] or ""])
    common.table(None, ["id", "status", "message", "type", "to", "tries", "when (UTC)",
                        "last error"],
                 rows)
