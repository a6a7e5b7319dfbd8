"""``trading config show``: the effective configuration and where each value came from."""

from __future__ import annotations

import typer

from trading import config as _config
from trading.signals.events import redact  # the one redaction (robust to raw / # ? @ :)

from . import common

config_app = typer.Typer(help="Show the configuration (file, TRADING_* variables, defaults).",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show(as_json: bool = common.JsonOption) -> None:
    """Print every setting's effective value and its source (default, file or environment)."""
    cfg = _config.get()
    rows = []
    for name, setting in _config.SETTINGS.items():
        value = redact(cfg[name]) if name == "redis_url" and cfg[name] else cfg[name]
        if name == "notify.urls":  # tokens and passwords; Apprise is not imported for this
            from trading.ops.notify import mask_url

            value = [mask_url(u) for u in value]
        rows.append({"key": name, "value": value, "source": cfg.source_of(name),
                     "env": setting.env, "doc": setting.doc})
    paths = {"config_file": str(cfg.path), "config_file_exists": cfg.path.exists(),
             "runtime_dir": str(cfg.runtime_dir), "state_dir": str(cfg.state_dir),
             "cache_dir": str(cfg.cache_dir), "db_path": str(cfg.db_path),
             "predictors_dir": str(cfg.predictors_dir)}
    predictor = common.check_predictor(cfg)
    if as_json:
        common.print_json({"paths": paths, "settings": rows, "predictor": predictor})
        return
    common.table("paths", ["what", "where"], [[k, v] for k, v in paths.items()])
    common.table("settings", ["key", "value", "source", "env"],
                 [[r["key"], _show(r["key"], r["value"]), r["source"], r["env"]] for r in rows])
    if predictor["ok"]:
        print(common.predictor_line(predictor))


def _show(key: str, value) -> str:
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)
