#!/usr/bin/env bash
# install.sh: set up trading-services on a Debian/Ubuntu machine.
#
#   ./install.sh               system install (root): venv in /opt/trading/venv, units in
#                              /etc/systemd/system, a `trading` system user and group that own
#                              the sockets, /usr/local/bin/trading
#   ./install.sh --user        per-user install: venv in ~/.local/share/trading/venv, units in
#                              ~/.config/systemd/user, ~/.local/bin/trading
#   ./install.sh [--user] --uninstall [--purge]
#                              stop and remove the units and the venv; the data (store, models,
#                              caches) stays unless --purge
#   ./install.sh --dev         development checkout: OS packages + .venv with an editable install
#                              and the test extra (what CI runs before the tests)
#
# Options for the system and --user installs:
#   --deps-from VENV           take the dependencies from an existing virtualenv of the same
#                              Python instead of the package index (offline machines, the tests):
#                              the project itself is still a regular, non-editable install
#   --no-start                 install and enable, but do not start the sockets now
#   --web-listen ADDR          where the dashboard's socket listens, which decides who can open
#                              it. Default: $TRADING_WEB_LISTEN, else the last install's choice,
#                              else the Unix socket %t/trading/web.sock (%t: the runtime
#                              directory), which only you (--user) or root and the trading group
#                              (system) can open; reach it with ssh -L 8787:PATH host.
#                              HOST:PORT on loopback (127.0.0.1:8787) is open to EVERY local
#                              account unless web.token is set; beyond loopback it needs
#                              web.token. An address asked for and taken fails before anything
#                              changes; a recorded TCP address found taken moves to the first
#                              free port above it, says so, and later runs keep it
#   --render-units MODE DIR [VENV]
#                              only render the unit files for MODE (system or user) into DIR
#
# Running it again is harmless: it says what changed, or that nothing did. Where systemd is not
# running (a container, a CI VM) it installs the package and the unit files and says so; the
# `trading` commands then run the handlers in-process. See docs/operations.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# OS packages: libsystemd-dev + pkg-config build systemd-python (source-only on PyPI);
# redis-server is used by the event-bus tests; systemd provides systemd-socket-activate.
os_packages=(libsystemd-dev pkg-config gcc python3-venv systemd redis-server)
# What a system or --user install needs (no redis: the event bus is optional).
run_packages=(libsystemd-dev pkg-config gcc python3-venv systemd)
# Development only: the dashboard's browser tests drive Debian's chromium through Playwright
# (the Python package, in the test extra); no browser is ever downloaded.
dev_packages=(chromium)

need_os_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    printf '%s\n' "${missing[@]}"
}

install_os_packages() {
    mapfile -t missing < <(need_os_packages "$@")
    [ ${#missing[@]} -eq 0 ] || [ -z "${missing[0]}" ] && { say "OS packages already present"; return; }
    command -v apt-get >/dev/null || die "missing OS packages (${missing[*]}) and no apt-get to install them"
    [ "$(id -u)" -eq 0 ] || die "installing OS packages (${missing[*]}) needs root; run with sudo or install them first"
    say "installing OS packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

dev_install() {
    install_os_packages "${os_packages[@]}" "${dev_packages[@]}"
    if [ ! -x "$here/.venv/bin/python" ]; then
        say "creating $here/.venv"
        "$python" -m venv "$here/.venv"
    fi
    "$here/.venv/bin/python" -m pip install -q --upgrade pip
    "$here/.venv/bin/python" -m pip install -q -e "$here[test]"
    say "development install ready: $here/.venv (run tests with .venv/bin/python -m pytest)"
}

# -- system and --user installs -----------------------------------------------------------

mode=system      # system or user
action=install   # install, uninstall or render
purge=0
start=1
deps_from=""
# The dashboard's address: asked for (--web-listen, else $TRADING_WEB_LISTEN), else the last
# install's, else the default: a Unix socket in the runtime directory, which the socket unit
# keeps to its owner and group (resolve_web_listen); web_addr is what gets rendered.
web_unix='%t/trading/web.sock'
web_listen=${TRADING_WEB_LISTEN:-}
web_listen_from=${TRADING_WEB_LISTEN:+TRADING_WEB_LISTEN}
web_listen_default=${TRADING_WEB_DEFAULT_LISTEN:-$web_unix}
web_addr=""
web_failed=""    # set when trading-web.socket could not start: what to tell at the end

set_paths() {
    if [ "$mode" = system ]; then
        prefix=/opt/trading
        unit_dir=/etc/systemd/system
        bin_link=/usr/local/bin/trading
        state_dir=/var/lib/trading
        cache_dir=/var/cache/trading
        config_dir=/etc/trading
        runtime_dir=/run/trading
        sysctl=(systemctl)
    else
        local home=${HOME:?HOME is not set}
        prefix=${XDG_DATA_HOME:-$home/.local/share}/trading
        unit_dir=${XDG_CONFIG_HOME:-$home/.config}/systemd/user
        bin_link=$home/.local/bin/trading
        # systemd 252 gives a user unit's StateDirectory= under $XDG_CONFIG_HOME (newer
        # releases: $XDG_STATE_HOME); trading.config resolves the same (see operations.md).
        state_dir=${XDG_CONFIG_HOME:-$home/.config}/trading
        cache_dir=${XDG_CACHE_HOME:-$home/.cache}/trading
        config_dir=""
        runtime_dir=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/trading
        sysctl=(systemctl --user)
    fi
    venv=$prefix/venv
}

# The one place the system and the user units differ: the @...@ placeholders and the lines
# marked @system@ (the socket's owner and the service's user exist only for a system install).
render_units() {  # render_units MODE DEST VENV
    local m=$1 dest=$2 v=$3 protect_home wanted_by keep
    if [ "$m" = system ]; then
        protect_home=yes wanted_by=multi-user.target keep=1
        # An interpreter under /root or /home (pyenv, a hand-built Python) must stay visible.
        case "$(readlink -f "$v/bin/python" 2>/dev/null || true)" in
            /root/*|/home/*) protect_home=read-only ;;
        esac
    else
        protect_home=read-only wanted_by=default.target keep=0
    fi
    mkdir -p "$dest"
    local f
    for f in "$here"/units/trading*.socket "$here"/units/trading*.service \
             "$here"/units/trading*.timer "$here"/units/trading*.target; do
        [ -e "$f" ] || continue
        sed -e "s|@VENV@|$v|g" -e "s|@PROTECT_HOME@|$protect_home|g" \
            -e "s|@WANTED_BY@|$wanted_by|g" -e "s|@WEB_LISTEN@|${web_addr:-$web_listen_default}|g" \
            -e "$( [ $keep = 1 ] && echo 's|^@system@||' || echo '/^@system@/d')" \
            "$f" > "$dest/$(basename "$f")"
    done
}

# Is the manager this install talks to running? (system: booted with systemd; user: a
# reachable user manager, e.g. a login session or the tests' private one)
systemd_running() {
    if [ "$mode" = system ]; then
        [ -d /run/systemd/system ] && systemctl show-environment >/dev/null 2>&1
    else
        systemctl --user show-environment >/dev/null 2>&1
    fi
}

# One line per source file: "sha256  path". Kept in the venv to tell whether a re-run must
# reinstall the package, and to name the files that changed when it must.
source_fingerprint() {
    (cd "$here" && find pyproject.toml lib handlers cli -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum)
}

changes=()
changed() { changes+=("$*"); say "$*"; }

# uv installs the dependencies in about half pip's time (22 s against
# 60 s from an empty cache; see docs/benchmarks.md). It comes from the package index into the
# venv itself (or from PATH); TRADING_INSTALLER=pip, or any failure of uv, means pip.
install_with_uv() {
    [ "${TRADING_INSTALLER:-uv}" = uv ] || return 1
    local uv
    uv=$(command -v uv || true)
    if [ -z "$uv" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check uv >/dev/null 2>&1 ||
            { say "uv not available; installing with pip"; return 1; }
        uv=$venv/bin/uv
    fi
    # --compile-bytecode: the handlers of a system install cannot write __pycache__ in a
    # root-owned venv, so without it every cold start would compile the sources again.
    "$uv" pip install -q --compile-bytecode --python "$venv/bin/python" "$here" ||
        { say "uv failed; installing with pip"; return 1; }
}

install_venv() {
    local fp
    fp=$(source_fingerprint)
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$prefix"
        if [ -n "$deps_from" ]; then
            # Same interpreter as the donor venv, so its compiled packages load.
            "$deps_from/bin/python" -m venv "$venv"
        else
            "$python" -m venv "$venv"
        fi
        changed "created virtualenv $venv"
    fi
    if [ -f "$venv/.trading-source" ]; then
        local differ
        # (diff exits 1 when the files differ: not an error here, whatever pipefail says)
        differ=$(printf '%s\n' "$fp" | { diff "$venv/.trading-source" - || true; } |
                 sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u | tr '\n' ' ')
        [ -n "$differ" ] || return 0
        say "sources changed since the last install: $differ"
    fi
    if [ -n "$deps_from" ]; then
        local site donor
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        donor=$("$deps_from/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        # A plain path line: the donor's packages are importable after our own site-packages;
        # its .pth files (e.g. an editable install of this project) are not run.
        echo "$donor" > "$site/trading-deps.pth"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
            --no-build-isolation --no-index "$here"
        "$venv/bin/python" -m pip check -q >/dev/null ||
            die "dependencies from $deps_from do not satisfy the project (see: $venv/bin/python -m pip check)"
    elif ! install_with_uv; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
    fi
    printf '%s\n' "$fp" > "$venv/.trading-source"
    changed "installed trading-services $(cd "$here" && "$venv/bin/python" -c \
        'import importlib.metadata as m; print(m.version("trading-services"))') into $venv"
}

# Where this install keeps its store, caches, configuration and sockets, written into the
# venv: the `trading` of this venv reads it (trading.config), so whoever runs it (root with a
# --user install included) uses what the services use, with or without systemd. It also keeps
# the dashboard's address (web_listen=), which a later run prefers to the default.
record_install() {
    local f=$venv/trading-install new
    if [ "$mode" = system ]; then
        new=$(printf '%s\n' "mode=system" "web_listen=$web_addr")
    else
        new=$(printf '%s\n' "mode=user" "home=$HOME" "uid=$(id -u)" \
            "XDG_CONFIG_HOME=${XDG_CONFIG_HOME:-}" "XDG_STATE_HOME=${XDG_STATE_HOME:-}" \
            "XDG_CACHE_HOME=${XDG_CACHE_HOME:-}" "XDG_RUNTIME_DIR=${runtime_dir%/trading}" \
            "web_listen=$web_addr")
    fi
    if [ "$(cat "$f" 2>/dev/null || true)" != "$new" ]; then
        printf '%s\n' "$new" > "$f"
        changed "recorded the install's paths in $f"
    fi
}

install_user_and_group() {
    if ! getent group trading >/dev/null; then
        groupadd --system trading
        changed "created system group trading (members may use the services)"
    fi
    if ! getent passwd trading >/dev/null; then
        useradd --system --gid trading --home-dir "$state_dir" --no-create-home \
            --shell /usr/sbin/nologin --comment "trading-services" trading
        changed "created system user trading (runs the handlers)"
    fi
}

# The configuration may hold secrets (redis_url's password): only root and the services'
# group read it. Created empty when missing; an existing file keeps its content, not its mode.
install_config() {
    local f=$config_dir/config.toml
    if [ ! -d "$config_dir" ]; then
        install -d -m 0755 -o root -g root "$config_dir"
        changed "created $config_dir"
    fi
    if [ ! -e "$f" ]; then
        install -m 0640 -o root -g trading /dev/null "$f"
        printf '%s\n' "# trading-services configuration (see \`trading config show\`)." \
            "# Mode 0640 root:trading: it may hold secrets such as redis_url's password." > "$f"
        changed "created $f (mode 0640 root:trading)"
    elif [ "$(stat -c '%a %U %G' "$f")" != "640 root trading" ]; then
        chown root:trading "$f"
        chmod 0640 "$f"
        changed "made $f mode 0640 root:trading (it may hold secrets)"
    fi
}

# --user: the configuration file and the predictors folder exist before the services start,
# so the units' ReadOnlyPaths= cover them (a service could otherwise create them in the
# state directory, which systemd 252 puts in the same folder). Existing ones are kept.
install_user_config() {
    local d=${XDG_CONFIG_HOME:-$HOME/.config}/trading
    if [ ! -e "$d/config.toml" ]; then
        install -d -m 0700 "$d"
        printf '%s\n' "# trading-services configuration (see \`trading config show\`)." \
            "# Read-only to the services: a predictor cannot rewrite it." > "$d/config.toml"
        chmod 0600 "$d/config.toml"
        changed "created $d/config.toml"
    fi
    if [ ! -d "$d/predictors" ]; then
        install -d -m 0700 "$d/predictors"
        changed "created $d/predictors (put a predictor module here: docs/predictors.md)"
    fi
}

install_units() {
    local tmp f name
    tmp=$(mktemp -d)
    render_units "$mode" "$tmp" "$venv"
    mkdir -p "$unit_dir"
    units_changed=()
    for f in "$tmp"/*; do
        name=$(basename "$f")
        if ! cmp -s "$f" "$unit_dir/$name"; then
            install -m 0644 "$f" "$unit_dir/$name"
            units_changed+=("$name")
        fi
    done
    rm -rf "$tmp"
    [ ${#units_changed[@]} -eq 0 ] || changed "installed units in $unit_dir: ${units_changed[*]}"
}

install_command_link() {
    if [ "$(readlink "$bin_link" 2>/dev/null || true)" != "$venv/bin/trading" ]; then
        mkdir -p "$(dirname "$bin_link")"
        ln -sfn "$venv/bin/trading" "$bin_link"
        changed "linked $bin_link -> $venv/bin/trading"
    fi
}

start_units() {
    if [ ${#units_changed[@]} -gt 0 ]; then
        "${sysctl[@]}" daemon-reload
    fi
    if [ "$("${sysctl[@]}" is-enabled trading.target 2>/dev/null || true)" != enabled ]; then
        "${sysctl[@]}" enable --quiet trading.target
        changed "enabled trading.target (the sockets start at $([ "$mode" = system ] && echo boot || echo login))"
    fi
    # Timers are WantedBy=trading.target: enabling links them into it.
    local t
    for t in "$unit_dir"/trading*.timer; do
        [ -e "$t" ] || continue
        t=$(basename "$t")
        if [ "$("${sysctl[@]}" is-enabled "$t" 2>/dev/null || true)" != enabled ]; then
            "${sysctl[@]}" enable --quiet "$t"
            changed "enabled $t"
        fi
    done
    [ "$start" = 1 ] || return 0
    local u timers=()
    for u in "${units_changed[@]}"; do
        # A changed socket unit takes effect only when the socket is re-created.
        case "$u" in *.socket)
            if [ "$("${sysctl[@]}" is-active "$u" 2>/dev/null || true)" = active ]; then
                "${sysctl[@]}" stop "${u%.socket}.service" "$u"
                changed "stopped $u to apply its new settings"
            fi ;;
        esac
        case "$u" in *.timer) timers+=("$u") ;; esac
    done
    for u in "$unit_dir"/trading*.socket "$unit_dir"/trading*.timer; do
        [ -e "$u" ] || continue
        u=$(basename "$u")
        if [ "$("${sysctl[@]}" is-active "$u" 2>/dev/null || true)" != active ]; then
            # a socket that failed (a start limit hit by a unit that could not start) starts
            # again only after its counters are reset
            "${sysctl[@]}" reset-failed "$u" "${u%.*}.service" 2>/dev/null || true
            local err
            if ! err=$("${sysctl[@]}" start "$u" 2>&1); then
                start_failed "$u" "$err"
                continue
            fi
            changed "started $u"
        fi
    done
    "${sysctl[@]}" start trading.target
    check_services
}

# Each service must answer health_check through its socket (systemd starts it for the call):
# an install whose units cannot start is a failure with the unit's reason and its fix, not
# "done". Status codes: systemd.exec(5) "Process exit codes".
check_services() {
    local name unit failed=0 status code why fix pids=() names=() i tmp
    tmp=$(mktemp -d)
    # All at once, each in the background: a unit that cannot start is seen failing (its
    # socket hits the start limit) long before the call's own timeout.
    for name in $("$venv/bin/python" -c 'from trading.handlers import SERVICES; print(*SERVICES)'); do
        [ -e "$unit_dir/trading-$name.service" ] || continue
        TRADING_RUNTIME_DIR=$runtime_dir TRADING_IN_PROCESS=never \
            "$venv/bin/trading" call "$name" health_check --timeout 60 >/dev/null 2>"$tmp/$name" &
        pids+=($!) names+=("$name")
    done
    for i in "${!pids[@]}"; do
        name=${names[$i]} unit=trading-${names[$i]}.service
        while kill -0 "${pids[$i]}" 2>/dev/null; do
            if [ "$("${sysctl[@]}" is-failed "trading-$name.socket" 2>/dev/null || true)" = failed ]; then
                kill "${pids[$i]}" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        if wait "${pids[$i]}"; then continue; fi
        failed=1
        status=$("${sysctl[@]}" show -p ExecMainStatus --value "$unit" 2>/dev/null || true)
        code=$("${sysctl[@]}" show -p ExecMainCode --value "$unit" 2>/dev/null || true)
        case "$status" in
            203) why="status 203/EXEC: systemd cannot execute $venv/bin/trading-$name"
                 fix="the unit's sandbox hides the venv (ProtectHome= for /home and /root, PrivateTmp= for /tmp) or it is gone; install where the unit can see it (a system install: PYTHON=/usr/bin/python3 sudo ./install.sh)" ;;
            226) why="status 226/NAMESPACE: systemd cannot set up the unit's sandbox"
                 fix="a path the unit names (ReadWritePaths=, StateDirectory=) is missing, or this kernel or container does not allow mount namespaces; see journalctl ${sysctl[*]:1} -u $unit" ;;
            200) why="status 200/CHDIR"; fix="the working directory is not accessible" ;;
            217) why="status 217/USER: the user trading does not exist"; fix="run the install again as root" ;;
            ''|0) why="no answer: $(tr '\n' ' ' < "$tmp/$name" | sed 's/trading: error: //')"
                 fix="see journalctl ${sysctl[*]:1} -u $unit and trading status" ;;
            *)  why="the handler exited with status $status ($code)"
                fix="see journalctl ${sysctl[*]:1} -u $unit (a traceback, or a bad config value)" ;;
        esac
        printf 'install: error: %s cannot start: %s; fix: %s\n' "$name" "$why" "$fix" >&2
    done
    rm -rf "$tmp"
    [ "$failed" = 0 ] || exit 1
    # The checked handlers go again now (their sockets keep listening), so the stack is idle,
    # at zero memory, right after the install rather than idle_exit seconds later.
    "${sysctl[@]}" stop "${names[@]/#/trading-}" 2>/dev/null || true
    say "every service answered health_check through its socket"
}

# -- the dashboard's address ---------------------------------------------------------------
# The address is the dashboard's audience. By default trading-web.socket is a Unix socket in
# the runtime directory (%t/trading/web.sock), which only the owner and the group can open;
# nothing else on the host can hold that path. A TCP address is an explicit choice (every local
# account can open a loopback port), and there anything else may already listen: another
# user's --user install, RStudio Server (8787 is its default). systemd would then fail the
# socket's start with a bare "Job failed". So a TCP address is checked before anything is
# enabled or started: asked for (--web-listen, TRADING_WEB_LISTEN) and taken, the install stops
# with the holder's name and changes nothing; the last install's choice taken (an upgrade, a
# re-run), it moves to the first free port above it, says so, and the record in the venv keeps
# that choice for later runs.

# probe ADDR: free, inuse, skip (not a TCP address) or the system's reason (Permission denied);
# scan ADDR N: the first of the N ports above ADDR's on its host where a bind works. The bind
# sets SO_REUSEADDR as systemd does, so only a listener (not a closing connection) is "inuse".
web_probe_py='
import errno, socket, sys
def parse(a):
    if a.isdigit():
        return "::", int(a)
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(a)
    return (host[1:-1] if host.startswith("[") else host), int(port)
def state(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if host == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((host, port))
        return "free"
    except OSError as e:
        return "inuse" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
    finally:
        s.close()
try:
    host, port = parse(sys.argv[2])
    if sys.argv[1] == "probe":
        print(state(host, port))
    else:
        print(next((p for p in range(port + 1, min(port + 1 + int(sys.argv[3]), 65536))
                    if state(host, p) == "free"), ""))
except (ValueError, OverflowError, socket.gaierror):
    print("skip" if sys.argv[1] == "probe" else "")
'

# An interpreter for the probe: the donor or the existing venv, else the one the venv comes from.
probe_python() {
    local c
    for c in "${deps_from:+$deps_from/bin/python}" "$venv/bin/python" "$(command -v "$python" || true)"; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return; }
    done
}

# web_address_state ADDR: free, ours (this install's trading-web.socket holds it: a re-run),
# inuse, skip (a Unix socket path, or not HOST:PORT) or the reason a bind fails.
web_address_state() {
    local a=$1 py st
    case "$a" in /*|%*|@*) echo skip; return ;; esac
    py=$(probe_python)
    if [ -n "$py" ]; then
        st=$("$py" -c "$web_probe_py" probe "$a" 2>/dev/null || echo skip)
    elif command -v ss >/dev/null; then
        st=$(ss -ltnH "sport = :${a##*:}" 2>/dev/null | grep -q . && echo inuse || echo free)
    else
        st=skip
    fi
    if [ "$st" = inuse ] && web_socket_is_ours "$a"; then st=ours; fi
    echo "$st"
}

# Does this install's own trading-web.socket listen on ADDR's port? (Its own address again, or
# one it gives up: a changed socket unit is stopped before it is started on the new address.)
web_socket_is_ours() {
    systemd_running || return 1
    [ "$("${sysctl[@]}" show -p ActiveState --value trading-web.socket 2>/dev/null || true)" = active ] ||
        return 1
    local listen
    listen=$("${sysctl[@]}" show -p Listen --value trading-web.socket 2>/dev/null || true)
    listen=${listen%% (*}
    [ -n "$listen" ] && [ "${listen##*:}" = "${1##*:}" ]
}

# web_holder ADDR: who listens there, in words: "rstudio-server (pid 123)", with the user when
# it is someone else's ("systemd (pid 812, user alice)": another user's socket unit); ss names
# other users' processes to root only.
web_holder() {
    local a=$1 want=$1 line="" name pid owner
    [ -n "${a//[0-9]/}" ] || want="*:$a"  # a bare port: every address, "*:PORT" to ss
    if command -v ss >/dev/null; then
        line=$(ss -ltnpH "sport = :${a##*:}" 2>/dev/null | awk -v a="$want" '
            $4 == a { print; found = 1; exit } NR == 1 { first = $0 }
            END { if (!found && first != "") print first }')
    fi
    name=$(sed -n 's/.*users:(("\([^"]*\)",pid=[0-9]*.*/\1/p' <<<"$line")
    pid=$(sed -n 's/.*users:(("[^"]*",pid=\([0-9]*\).*/\1/p' <<<"$line")
    if [ -n "$name" ] && [ -n "$pid" ]; then
        owner=$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ' || true)
        if [ -n "$owner" ] && [ "$owner" != "$(id -un)" ]; then
            echo "$name (pid $pid, user $owner)"
        else
            echo "$name (pid $pid)"
        fi
    elif [ "$(id -u)" -ne 0 ]; then
        echo "another user's process"
    else
        echo "a process ss does not name"
    fi
}

# web_next_free ADDR: the first free address on ADDR's host, 1 to 50 ports above it; or nothing.
web_next_free() {
    local a=$1 py port
    case "$a" in /*|%*|@*) return 0 ;; esac
    py=$(probe_python)
    [ -n "$py" ] || return 0
    port=$("$py" -c "$web_probe_py" scan "$a" 50 2>/dev/null || true)
    [ -n "$port" ] || return 0
    if [ -z "${a//[0-9]/}" ]; then echo "$port"; else echo "${a%:*}:$port"; fi
}

web_move_command() {  # the install command that moves the dashboard to ADDR
    local a=$1
    case "$a" in %*|/*) a="'$a'" ;; esac
    printf '%s --web-listen %s' "$([ "$mode" = user ] && echo './install.sh --user' || echo 'sudo ./install.sh')" "$a"
}

resolve_web_listen() {
    local recorded base state next label
    recorded=$(sed -n 's/^web_listen=//p' "$venv/trading-install" 2>/dev/null | tail -n 1 || true)
    if [ -n "$web_listen" ]; then
        web_addr=$web_listen
        state=$(web_address_state "$web_addr")
        case "$state" in
            free|ours|skip) return 0 ;;
            inuse)
                next=$(web_next_free "$web_addr")
                die "the dashboard's address $web_addr ($web_listen_from) is taken by $(web_holder "$web_addr"); nothing was changed; choose another: $(web_move_command "${next:-127.0.0.1:PORT}")${next:+ (free now)}, or a Unix socket path" ;;
            *)  die "the dashboard cannot listen on $web_addr ($web_listen_from): $state; nothing was changed; choose another address with --web-listen" ;;
        esac
    fi
    base=${recorded:-$web_listen_default}
    web_addr=$base
    state=$(web_address_state "$base")
    case "$state" in free|ours|skip) return 0 ;; esac
    if [ -n "$recorded" ]; then label="$base (the last install's choice)"; else label=$base; fi
    [ "$state" = inuse ] ||
        die "the dashboard cannot listen on $label: $state; nothing was changed; choose an address with --web-listen"
    # A TCP address chosen before (or a TCP default) stays TCP: the next free port above it.
    next=$(web_next_free "$base")
    [ -n "$next" ] ||
        die "$label is taken by $(web_holder "$base"), and so are the 50 ports above it; nothing was changed; choose an address: $(web_move_command "$web_unix"), or $(web_move_command 127.0.0.1:PORT)"
    say "$label is taken by $(web_holder "$base"); the dashboard listens on $next instead; --web-listen to choose"
    web_addr=$next
}

# A socket or timer that systemd could not start: which one and why, in one line. The
# dashboard's socket is not worth the rest of the install: that goes on without it and the
# install ends with how to move it (exit 1); any other unit ends the install here.
start_failed() {
    local u=$1 err=$2 listen result state why next
    listen=$("${sysctl[@]}" show -p Listen --value "$u" 2>/dev/null | head -n 1 || true)
    listen=${listen%% (*}
    result=$("${sysctl[@]}" show -p Result --value "$u" 2>/dev/null || true)
    why="systemd could not start it (result: ${result:-unknown}: $(printf '%s' "$err" | head -n 1))"
    if [ -n "$listen" ]; then
        state=$(web_address_state "$listen")
        case "$state" in
            inuse) why="$listen is taken by $(web_holder "$listen")" ;;
            free|ours|skip) why="cannot listen on $listen; $why" ;;
            *) why="cannot listen on $listen: $state" ;;
        esac
    fi
    if [ "$u" = trading-web.socket ]; then
        next=$(web_next_free "${listen:-$web_addr}")
        web_failed="the dashboard is off: $why; move it: $(web_move_command "${next:-127.0.0.1:PORT}")${next:+ (free now)}, or a Unix socket path"
        printf 'install: error: %s cannot start: %s; going on without the dashboard\n' "$u" "$why" >&2
        return 0
    fi
    die "$u cannot start: $why; see ${sysctl[*]} status $u"
}

# web_expand ADDR: %t (systemd's runtime directory) spelled out, as the socket unit has it.
web_expand() {
    case "$1" in %t/*) echo "${runtime_dir%/trading}/${1#%t/}" ;; *) echo "$1" ;; esac
}

# The last two lines of an install: who can open the dashboard (a warning when that is every
# local account), and where it is with how to reach it (or why it is off). The words are
# trading.web.audience's, the same that `trading status` prints.
say_dashboard() {
    local a line
    if [ -n "$web_failed" ]; then
        printf 'install: error: %s\n' "$web_failed" >&2
        return 0
    fi
    a=$(web_expand "$web_addr")
    if ! line=$("$venv/bin/python" -m trading.web.audience "$a" "$mode" "${runtime_dir%/trading}" 2>/dev/null); then
        line="dashboard: $a"
    fi
    while IFS= read -r l; do say "$l"; done <<<"$line"
}

do_install() {
    if [ "$mode" = system ] && [ "$(id -u)" -ne 0 ]; then
        die "a system install needs root (sudo ./install.sh), or use ./install.sh --user"
    fi
    # Before anything changes: a taken address that was asked for ends the install here.
    resolve_web_listen
    if [ -z "$deps_from" ]; then
        mapfile -t missing < <(need_os_packages "${run_packages[@]}")
        if [ -n "${missing[0]:-}" ]; then
            if [ "$(id -u)" -eq 0 ]; then
                install_os_packages "${missing[@]}"
                changes+=("OS packages")
            else
                say "warning: OS packages missing (${missing[*]}); if the build fails: sudo apt-get install ${missing[*]}"
            fi
        fi
    else
        [ -x "$deps_from/bin/python" ] || die "--deps-from $deps_from: no $deps_from/bin/python"
    fi
    if [ "$mode" = system ]; then
        # The handlers run as user trading: an interpreter under /root or /home (pyenv) is
        # out of its reach, so a system install defaults to the distribution's python3.
        if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; fi
        local interp=$deps_from/bin/python
        [ -n "$deps_from" ] || interp=$(command -v "$python" || echo "$python")
        case "$(readlink -f "$interp")" in
            /root/*|/home/*) say "warning: the interpreter lives under /root or /home; user trading may not be able to run it (set PYTHON=/usr/bin/python3)" ;;
        esac
        install_user_and_group
        install_config
    else
        install_user_config
    fi
    install_venv
    record_install
    install_units
    install_command_link
    local running=0
    if systemd_running; then
        running=1
        start_units
    fi
    if [ ${#changes[@]} -eq 0 ] && [ -z "$web_failed" ]; then
        say "nothing changed: trading-services is installed ($venv, units in $unit_dir)"
    fi
    if [ $running = 0 ]; then
        say "systemd is not running here: installed the package and the unit files; \`trading\` commands run the handlers in-process"
    elif [ ${#changes[@]} -gt 0 ]; then
        say "done: sockets listening in $runtime_dir; see \`trading status\`"
        # A user manager lives only as long as a login session, unless lingering is on.
        if [ "$mode" = user ] && command -v loginctl >/dev/null &&
           [ "$(loginctl show-user "$(id -un)" --property=Linger --value 2>/dev/null || true)" = no ]; then
            say "note: the sockets stop when you log out; to keep them: sudo loginctl enable-linger $(id -un)"
        fi
    fi
    if [ "$mode" = user ] && ! printf '%s' ":$PATH:" | grep -q ":$(dirname "$bin_link"):"; then
        say "note: $(dirname "$bin_link") is not on your PATH; add it to run \`trading\`"
    fi
    if [ $running = 0 ]; then
        local who
        who=$("$venv/bin/python" -m trading.web.audience "$(web_expand "$web_addr")" "$mode" \
              "${runtime_dir%/trading}" 2>/dev/null | head -n 1 || true)
        [ -z "$who" ] || say "$who"
        say "dashboard: trading-web.socket listens on $(web_expand "$web_addr") once systemd runs it"
    else
        say_dashboard
    fi
    [ -z "$web_failed" ] || exit 1
}

do_uninstall() {
    if [ "$mode" = system ] && [ "$(id -u)" -ne 0 ]; then
        die "a system uninstall needs root (sudo ./install.sh --uninstall)"
    fi
    local units=() f
    for f in "$unit_dir"/trading*.socket "$unit_dir"/trading*.service \
             "$unit_dir"/trading*.timer "$unit_dir"/trading*.target; do
        [ -e "$f" ] && units+=("$(basename "$f")")
    done
    if [ ${#units[@]} -gt 0 ]; then
        if systemd_running; then
            "${sysctl[@]}" disable --quiet "${units[@]}" 2>/dev/null || true
            "${sysctl[@]}" stop "${units[@]}" 2>/dev/null || true
        fi
        for f in "${units[@]}"; do rm -f "$unit_dir/$f"; done
        # Drop-ins (ours or an admin's) go with the units they change.
        for f in "${units[@]}"; do rm -rf "$unit_dir/$f.d" "$unit_dir/$f.wants"; done
        if systemd_running; then
            "${sysctl[@]}" daemon-reload
            "${sysctl[@]}" reset-failed "${units[@]}" 2>/dev/null || true
        fi
        changed "stopped and removed units from $unit_dir: ${units[*]}"
        rmdir "$runtime_dir" 2>/dev/null || true  # empty now: RemoveOnStop= took the sockets
    fi
    if [ "$(readlink "$bin_link" 2>/dev/null || true)" = "$venv/bin/trading" ]; then
        rm -f "$bin_link"
        changed "removed $bin_link"
    fi
    if [ -d "$prefix" ]; then
        rm -rf "$prefix"
        changed "removed $prefix"
    fi
    if [ "$purge" = 1 ]; then
        for f in "$state_dir" "$cache_dir" $config_dir; do
            if [ -e "$f" ]; then rm -rf "$f"; changed "purged $f"; fi
        done
        if [ "$mode" = system ]; then
            if getent passwd trading >/dev/null; then userdel trading; changed "removed user trading"; fi
            if getent group trading >/dev/null; then groupdel trading; changed "removed group trading"; fi
        fi
    fi
    if [ ${#changes[@]} -eq 0 ]; then
        say "nothing to uninstall ($mode install not found)"
    elif [ "$purge" = 0 ] && [ -e "$state_dir" ]; then
        say "kept the data in $state_dir and $cache_dir (remove it with --uninstall --purge)"
    fi
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

[ "${1:-}" = --dev ] && [ $# -eq 1 ] && { dev_install; exit 0; }

while [ $# -gt 0 ]; do
    case "$1" in
        --user) mode=user ;;
        --system) mode=system ;;
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        --no-start) start=0 ;;
        --deps-from) [ $# -ge 2 ] || usage; deps_from=$(cd "$2" && pwd); shift ;;
        --web-listen)
            [ $# -ge 2 ] || usage
            case "$2" in *'|'*|*' '*|*'&'*|*'\'*|'') die "--web-listen: expected HOST:PORT or /path/to.sock" ;; esac
            web_listen=$2 web_listen_from=--web-listen; shift ;;
        --render-units)
            [ $# -ge 3 ] || usage
            case "$2" in system|user) ;; *) usage ;; esac
            mode=$2; set_paths
            web_addr=${web_listen:-$web_listen_default}  # rendered as given: no port check
            render_units "$2" "$3" "${4:-$venv}"
            exit 0 ;;
        --dev) die "--dev takes no other options" ;;
        -h|--help) usage ;;
        *) say "unknown option: $1"; usage ;;
    esac
    shift
done
[ "$purge" = 0 ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall"
set_paths
if [ "$action" = uninstall ]; then do_uninstall; else do_install; fi
