"""Configuration: defaults, one TOML file, and ``TRADING_*`` environment variables, in that order.

Every setting is declared once in :data:`SETTINGS` with its type, default and a one-line doc;
the file uses the same names (dots are TOML tables: ``weights.technical`` is ``[weights]
technical = ...``) and the environment variable is ``TRADING_`` plus the name in capitals with
dots as underscores (``TRADING_WEIGHTS_TECHNICAL``). A bad value is a :class:`ConfigError`
naming the key and where it came from. :func:`load` remembers where each value came from, for
``trading config show``.

Paths are worked out as strings and given out as :class:`pathlib.Path` (``cfg.db_path``), and
as strings where a handler's cold start needs them (``cfg.db_file``, ``cfg.socket_file``):
``pathlib`` imports ``re``, ``fnmatch`` and ``urllib.parse``, about 5 ms of every activation.
They follow the install, by one rule whoever runs the code (issue 19):

1. a setting (``state_dir``, ``cache_dir``, ``runtime_dir``; file or ``TRADING_*``) wins;
2. a systemd service gets ``$STATE_DIRECTORY``/``$CACHE_DIRECTORY`` from its unit;
3. an installed ``trading`` follows the install it belongs to, which install.sh writes into
   its venv (``trading-install``): a system install uses /var/lib/trading, /var/cache/trading,
   /run/trading and /etc/trading/config.toml; a ``--user`` install the XDG directories of the
   user who installed it, also when root runs it and where no systemd runs;
4. anything else (a development checkout): root the system paths, others their XDG ones.

The module is long because every setting is declared here, one line each with its type,
default and doc (:data:`SETTINGS`), beside the one rule for paths that uses them.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

from trading.errors import ConfigError

DEFAULT_SYMBOLS = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]
# The bar intervals a predictor may be fed from (issue 29): daily, then the intraday ones of
# trading.market.intraday.INTERVALS (not imported here: every cold start reads this module;
# tests/test_intraday_predict.py checks the two agree). The one list every check uses:
# the setting, `trading predict --interval`, the prediction service's `interval` parameter.
PREDICTOR_INTERVALS = ("1d", "1h", "30m", "15m")


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a number")
    return float(v)


def _pos_float(v: Any) -> float:
    f = _float(v)
    if not f > 0:
        raise ValueError("must be greater than 0")
    return f


def _int(v: Any) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError("expected a whole number")
    return int(v)


def _pos_int(v: Any) -> int:
    i = _int(v)
    if i < 1:
        raise ValueError("must be at least 1")
    return i


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _one_of(*choices: str):
    def parse(v: Any) -> str:
        v = _str(v).strip()
        if v.upper() in choices:
            return v.upper()
        if v.lower() in choices:
            return v.lower()
        raise ValueError(f"expected one of {', '.join(choices)}")
    return parse


def _list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [s.strip() for s in v.replace(",", " ").split()]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError("expected a list of strings (or a comma-separated string)")
    return [s for s in v if s]


def _url_list(v: Any) -> list[str]:
    """Like :func:`_list`, but a string splits on whitespace only: an Apprise URL may hold
    commas (``mailto://...?to=a@x,b@x``)."""
    if isinstance(v, str):
        v = v.split()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError("expected a list of URLs (or a space-separated string)")
    return [s.strip() for s in v if s.strip()]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _fraction(v: Any) -> float:
    f = _float(v)
    if not 0 <= f <= 1:
        raise ValueError("must be between 0 and 1")
    return f


def _predictor(v: Any) -> str:
    v = _str(v).strip()
    module, sep, name = v.partition(":")
    if not sep or not module or not name or any(
            not part.isidentifier() for part in module.split(".") + name.split(".")):
        raise ValueError("expected module:Name, e.g. momentum:EnhancedMarketAwarePredictor")
    return v


class Setting:
    """One setting: its name, parser, default and a one-line doc. (A plain class: dataclasses
    imports inspect, about 7 ms on every cold start.)"""

    __slots__ = ("name", "parse", "default", "doc")

    def __init__(self, name: str, parse: Callable[[Any], Any], default: Any, doc: str) -> None:
        self.name, self.parse, self.default, self.doc = name, parse, default, doc

    @property
    def env(self) -> str:
        return "TRADING_" + self.name.upper().replace(".", "_").replace("-", "_")


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("symbols", _list, DEFAULT_SYMBOLS, "symbols predicted when none are given"),
    Setting("source", _str, "yahoo", "market data source: yahoo, sample or csv:DIR"),
    Setting("news_source", _str, "yahoo", "news source: yahoo, sample or jsonl:DIR"),
    Setting("runtime_dir", _str, "", "where the service sockets are (default: from the install)"),
    Setting("state_dir", _str, "", "where the SQLite store and models live (default: from the install)"),
    Setting("cache_dir", _str, "", "where caches live (default: from the install)"),
    Setting("idle_exit", _pos_float, 30.0, "seconds without connections before a service exits"),
    Setting("conn_idle", _pos_float, 60.0, "seconds an idle client connection is kept open"),
    Setting("max_connections", _pos_int, 16, "connections a service serves at once (more wait)"),
    Setting("line_limit", _pos_int, 1 << 20, "longest request line in bytes"),
    Setting("request_timeout", _pos_float, 10.0, "seconds a request line may take to arrive whole (and an answer to be taken)"),
    Setting("max_per_peer", _pos_int, 8, "connections one client process may hold at once"),
    Setting("max_per_user", _pos_int, 12, "connections one other user (not root, not the service's own) may hold at once"),
    Setting("max_batch", _pos_int, 32, "requests in one JSON-RPC batch"),
    Setting("batch_reply_limit", _pos_int, 4 << 20, "bytes of answers one batch may build; the rest are refused"),
    Setting("drain_timeout", _pos_float, 20.0, "seconds a stopping service waits for requests in flight"),
    Setting("reply_limit", _pos_int, 32 << 20, "longest answer line a client accepts, in bytes"),
    Setting("timeout", _pos_float, 30.0, "seconds a client waits for an answer"),
    Setting("in_process", _one_of("auto", "always", "never"), "auto", "run handlers in-process: auto (when no socket), always, never"),
    Setting("log_level", _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO", "log level of the services"),
    Setting("redis_url", _str, "", "publish events to this Redis (redis://...); empty: off"),
    Setting("allowed_users", _list, [], "users allowed to connect (besides root and the service user)"),
    Setting("allowed_groups", _list, ["trading"], "groups whose members may connect"),
    Setting("cache.max_series", _pos_int, 500, "bar series cached per source (all csv: folders together count as one); the least recently used are evicted (and fetched again when asked for)"),
    Setting("cache.max_bars", _pos_int, 1_000_000, "bars (rows) cached per source, as cache.max_series (about 100 to 200 MB of store, by the length of the source's name)"),
    Setting("news_half_life_h", _pos_float, 24.0, "hours after which a headline weighs half"),
    Setting("context.index", _str, "^AXJO", "index whose trend sets the market context"),
    Setting("context.sessions", _pos_int, 5, "sessions over which the index trend is measured"),
    Setting("context.bearish", _float, -1.5, "trend % below which the market is BEARISH"),
    Setting("context.weak_bearish", _float, -0.5, "trend % below which it is WEAK_BEARISH"),
    Setting("context.weak_bullish", _float, 0.5, "trend % above which it is WEAK_BULLISH"),
    Setting("context.bullish", _float, 1.5, "trend % above which it is BULLISH"),
    Setting("multiplier.bearish", _pos_float, 0.7, "confidence multiplier when BEARISH"),
    Setting("multiplier.weak_bearish", _pos_float, 0.9, "confidence multiplier when WEAK_BEARISH"),
    Setting("multiplier.neutral", _pos_float, 1.0, "confidence multiplier when NEUTRAL"),
    Setting("multiplier.weak_bullish", _pos_float, 1.05, "confidence multiplier when WEAK_BULLISH"),
    Setting("multiplier.bullish", _pos_float, 1.1, "confidence multiplier when BULLISH"),
    Setting("threshold.bearish", _fraction, 0.80, "BUY confidence threshold when BEARISH"),
    Setting("threshold.weak_bearish", _fraction, 0.75, "BUY confidence threshold when WEAK_BEARISH"),
    Setting("threshold.neutral", _fraction, 0.70, "BUY confidence threshold when NEUTRAL"),
    Setting("threshold.weak_bullish", _fraction, 0.68, "BUY confidence threshold when WEAK_BULLISH"),
    Setting("threshold.bullish", _fraction, 0.65, "BUY confidence threshold when BULLISH"),
    Setting("weights.technical", _fraction, 0.40, "weight of the technical component"),
    Setting("weights.sentiment", _fraction, 0.20, "weight of the sentiment component"),
    Setting("weights.volume", _fraction, 0.15, "weight of the volume component"),
    Setting("weights.market", _fraction, 0.10, "weight of the market component"),
    Setting("weights.model", _fraction, 0.15, "weight of the model component (when a model is active)"),
    Setting("web.listen", _str, "127.0.0.1:8787", "where `trading web` listens: HOST:PORT or a Unix socket path (the socket unit has its own ListenStream=)"),
    Setting("web.token", _str, "", "token the dashboard asks for; needed to listen beyond loopback and for actions"),
    Setting("web.allow_actions", _bool, False, "let the dashboard run predictions and activate models (with the token)"),
    Setting("web.hosts", _list, [], "Host names the dashboard answers besides loopback names and addresses (with a token, this host's name too; * for any)"),
    Setting("notify.urls", _url_list, [], "Apprise URLs alerts go to (json://, mailto://, tgram://, ...); empty: off"),
    Setting("notify.send", _one_of("changes", "signals", "all"), "changes", "alert on: changes (a symbol's call changed), signals (every BUY/SELL), all"),
    Setting("notify.min_confidence", _fraction, 0.0, "BUY/SELL calls below this confidence are not signals to alert on"),
    Setting("notify.symbols", _list, [], "alert only for these symbols; empty: every symbol"),
    Setting("notify.digest", _bool, True, "send a daily digest after the outcomes job"),
    Setting("notify.timeout", _pos_float, 10.0, "seconds one URL may take to accept a message"),
    Setting("notify.link_base", _str, "", "dashboard address for links in alerts (https://host:port); empty: no link"),
    Setting("directional_calls", _bool, False, "let the built-in rules call BUY and SELL; off: they showed no edge after costs (docs/choosing-the-predictor.md), so they call HOLD and say what they lean to"),
    Setting("predictor", _predictor, "trading.signals.rules:predict", "what decides each prediction: module:Name (a class, factory or function; docs/predictors.md)"),
    Setting("predictors_dir", _str, "", "a folder put on the import path for predictors (default: predictors/ beside the config file)"),
    Setting("predictor_interval", _one_of(*PREDICTOR_INTERVALS), "1d", "the bars the predictor's inputs are computed over: 1d (daily) or 1h, 30m, 15m (the completed intraday bars; docs/predictors.md)"),
    Setting("training.max_rows", _pos_int, 80_000, "symbol-sessions one train job holds at most, the newest kept (80,000 peak at about 240 MB, the training unit's MemoryHigh=)"),
    Setting("predictor_timeout", _pos_float, 10.0, "seconds a predictor may take for one prediction call (all its symbols)"),
]}


INSTALL_RECORD = "trading-install"  # in the venv; written by install.sh (record_install)


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)


def read_install(prefix: str | Path | None = None) -> dict[str, str] | None:
    """The install this interpreter belongs to, as install.sh recorded it in the venv
    (``mode=system``, or ``mode=user`` with the user's HOME and XDG directories); None for a
    development checkout or any other environment."""
    try:
        with open(os.path.join(sys.prefix if prefix is None else prefix, INSTALL_RECORD),
                  encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    record = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return record if record.get("mode") in ("system", "user") else None


def _user_env(env: Mapping[str, str], install: Mapping[str, str] | None) -> Mapping[str, str]:
    """The environment the user paths come from: a ``--user`` install's own HOME and XDG
    directories (whoever runs it: root too), else the running process's."""
    if not install or install.get("mode") != "user":
        return env
    mine = {k: v for k, v in env.items() if not k.startswith("XDG_") and k != "HOME"}
    mine.update({k: v for k, v in install.items() if k.startswith("XDG_") and v})
    mine["HOME"] = install.get("home") or env.get("HOME", "~")
    return mine


def _system(install: Mapping[str, str] | None) -> bool:
    """Whether the system paths apply: the install says so, else root's are the system's."""
    if install:
        return install.get("mode") == "system"
    return os.geteuid() == 0


_NO_INSTALL: Any = object()


def config_file(environ: Mapping[str, str] | None = None,
                install: Mapping[str, str] | None = _NO_INSTALL) -> Path:
    """The configuration file: ``$TRADING_CONFIG``, else the system or the user file."""
    return _path(_config_file(environ, install))


def _config_file(environ: Mapping[str, str] | None = None,
                 install: Mapping[str, str] | None = _NO_INSTALL) -> str:
    env = os.environ if environ is None else environ
    if install is _NO_INSTALL:
        install = read_install()
    if env.get("TRADING_CONFIG"):
        return env["TRADING_CONFIG"]
    if install and install.get("mode") == "user":
        return _user_file(_user_env(env, install))
    system = "/etc/trading/config.toml"
    # The system file is mode 0640 root:trading (it may hold secrets): a user who cannot
    # read it gets their own file, not an error on every command.
    if os.geteuid() == 0 or (os.path.exists(system) and os.access(system, os.R_OK)
                             and not os.path.exists(_user_file(env))):
        return system
    return _user_file(env)


def _home(env: Mapping[str, str], below: str) -> str:
    """``$HOME/below`` (``~`` expanded as ``Path.expanduser`` does, when HOME is unset)."""
    return os.path.join(os.path.expanduser(env.get("HOME", "~")), below)


def _expand(path: str, key: str) -> str:
    """``~`` and ``~user`` expanded; a ConfigError naming the setting where they cannot be
    (an unknown user), rather than a relative directory named ``~user``."""
    expanded = os.path.expanduser(path)
    if expanded.startswith("~"):
        raise ConfigError(f"{key} = {path!r}: cannot expand {expanded.split('/', 1)[0]!r} "
                          "(no such user, or no home directory)")
    return expanded


def _user_file(env: Mapping[str, str]) -> str:
    base = env.get("XDG_CONFIG_HOME") or _home(env, ".config")
    return os.path.join(base, "trading", "config.toml")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Config:
    """The effective configuration: ``cfg["idle_exit"]``, ``cfg.source_of("idle_exit")``."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], path: Path | str,
                 environ: Mapping[str, str], install: Mapping[str, str] | None = None,
                 watchlists: dict[str, list[str] | str] | None = None) -> None:
        self._values = values
        self._sources = sources
        # [watchlists] NAME = [codes] or "file": named symbol universes (--symbols-from NAME);
        # names are the user's, so they live beside SETTINGS rather than in it.
        self.watchlists = watchlists or {}
        self.file = os.fspath(path)
        # The file as it was read ({mtime_ns, crc32}; None: there was none): `trading status`
        # compares it with the file now (file_stamp) to tell a service runs an older one.
        self.loaded: dict[str, int] | None = None
        self.environ = environ
        self.install = install
        self._system = _system(install)
        self._user_env = _user_env(environ, install)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def source_of(self, name: str) -> str:
        return self._sources[name]

    def items(self):
        return self._values.items()

    # -- paths: worked out as strings; Path objects for callers off the cold path ---------
    @property
    def path(self) -> Path:
        """The configuration file (it need not exist)."""
        return _path(self.file)

    def _dir(self, key: str, systemd_var: str, system: str, xdg_var: str, xdg_default: str) -> str:
        if self[key]:
            return _expand(self[key], key)
        if systemd_var and self.environ.get(systemd_var):
            return self.environ[systemd_var].split(":")[0]
        if self._system:
            return system
        env = self._user_env
        return os.path.join(env.get(xdg_var) or _home(env, xdg_default), "trading")

    def _runtime_dir(self) -> str:
        if self["runtime_dir"]:
            return _expand(self["runtime_dir"], "runtime_dir")
        if self.install:
            if self._system:
                return "/run/trading"
            xdg = self._user_env.get("XDG_RUNTIME_DIR") or f"/run/user/{self.install.get('uid')}"
            return os.path.join(xdg, "trading")
        system = "/run/trading"
        xdg = self.environ.get("XDG_RUNTIME_DIR")
        if xdg and (os.geteuid() != 0 or not os.path.exists(system)
                    and os.path.exists(os.path.join(xdg, "trading"))):
            return os.path.join(xdg, "trading")
        return system

    def _state_dir(self) -> str:
        path = self._dir("state_dir", "STATE_DIRECTORY", "/var/lib/trading", "XDG_STATE_HOME",
                         ".local/state")
        if self["state_dir"] or self.environ.get("STATE_DIRECTORY") or self._system:
            return path
        # A user unit's StateDirectory= is $XDG_STATE_HOME from systemd 254 on, but
        # $XDG_CONFIG_HOME before (Debian 12 has 252): use whichever holds the store.
        legacy = self._dir("state_dir", "", "", "XDG_CONFIG_HOME", ".config")
        if not os.path.exists(os.path.join(path, "trading.db")) \
                and os.path.exists(os.path.join(legacy, "trading.db")):
            return legacy
        return path

    @property
    def runtime_dir(self) -> Path:
        """Sockets: ``TRADING_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/trading`` (a user install),
        else /run/trading (a system install). Root prefers the system install's sockets and
        uses its own user manager's only when there is no system install."""
        return _path(self._runtime_dir())

    @property
    def state_dir(self) -> Path:
        return _path(self._state_dir())

    @property
    def cache_dir(self) -> Path:
        return _path(self._dir("cache_dir", "CACHE_DIRECTORY", "/var/cache/trading",
                               "XDG_CACHE_HOME", ".cache"))

    @property
    def predictors_dir(self) -> Path:
        """Where predictor modules may live: ``predictors_dir``, else ``predictors/`` beside
        the configuration file (~/.config/trading/predictors, /etc/trading/predictors)."""
        if self["predictors_dir"]:
            return _path(_expand(self["predictors_dir"], "predictors_dir"))
        return self.path.parent / "predictors"

    @property
    def db_path(self) -> Path:
        return _path(self.db_file)

    @property
    def db_file(self) -> str:
        """The store's file, as a string (what the handlers open)."""
        return os.path.join(self._state_dir(), "trading.db")

    def socket_path(self, service: str) -> Path:
        return _path(self.socket_file(service))

    def socket_file(self, service: str) -> str:
        """``service``'s socket, as a string (what the handlers connect to)."""
        return os.path.join(self._runtime_dir(), f"{service}.sock")


def load(environ: Mapping[str, str] | None = None, path: Path | None = None,
         install: Mapping[str, str] | None = _NO_INSTALL) -> Config:
    """Read defaults, then the TOML file (if it exists), then ``TRADING_*`` variables.
    ``install`` is the install's record (default: this venv's, :func:`read_install`)."""
    env = os.environ if environ is None else environ
    if install is _NO_INSTALL:
        install = read_install()
    path = os.fspath(path) if path else _config_file(env, install)
    values = {name: s.default for name, s in SETTINGS.items()}
    sources = {name: "default" for name in SETTINGS}
    watchlists: dict[str, list[str] | str] = {}
    loaded = None
    if os.path.exists(path):
        import tomllib
        import zlib

        try:
            with open(path, "rb") as f:
                raw = f.read()
                loaded = {"mtime_ns": os.fstat(f.fileno()).st_mtime_ns,
                          "crc32": zlib.crc32(raw)}
            document = tomllib.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        watchlists = _watchlists(document.pop("watchlists", {}), str(path))
        table = _flatten(document)
        for name, raw in table.items():
            setting = SETTINGS.get(name)
            if setting is None:
                raise ConfigError(f"{path}: unknown key {name!r}")
            values[name] = _parse(setting, raw, str(path))
            sources[name] = str(path)
    for name, setting in SETTINGS.items():
        if setting.env in env:
            values[name] = _parse(setting, env[setting.env], f"environment {setting.env}")
            sources[name] = f"env {setting.env}"
    cfg = Config(values, sources, path, env, install, watchlists)
    cfg.loaded = loaded
    return cfg


def file_stamp(path: str) -> dict[str, int] | None:
    """``{mtime_ns, crc32}`` of a configuration file as it is now (None: there is none), to
    compare with what a process loaded (:attr:`Config.loaded`)."""
    import zlib

    try:
        with open(path, "rb") as f:
            return {"mtime_ns": os.fstat(f.fileno()).st_mtime_ns, "crc32": zlib.crc32(f.read())}
    except FileNotFoundError:
        return None


def _watchlists(table: Any, path: str) -> dict[str, list[str] | str]:
    """``[watchlists]``: each NAME is a list of codes, or a string naming a file of codes
    (relative to the configuration file's folder). The codes themselves are checked when a
    command uses the list (:mod:`trading.market.universe`), so a typo in one list never stops
    a command that does not use it."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: watchlists must be a table: [watchlists] NAME = [...]")
    out: dict[str, list[str] | str] = {}
    for name, value in table.items():
        if isinstance(value, str) and value.strip():
            where = _expand(value.strip(), f"watchlists.{name}")
            out[name] = os.path.join(os.path.dirname(os.path.abspath(path)), where)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out[name] = list(value)
        else:
            raise ConfigError(f"watchlists.{name} = {value!r} in {path}: expected a list of "
                              "codes or the path of a file of codes")
    return out


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{setting.name} = {raw!r} in {where}: {exc}") from exc


_cached: Config | None = None


def get() -> Config:
    """The process-wide configuration, loaded once (tests call :func:`reset`)."""
    global _cached
    if _cached is None:
        _cached = load()
    return _cached


def reset() -> None:
    global _cached
    _cached = None
