#!/usr/bin/env bash
# install.sh: set up trading-services on a Debian/Ubuntu machine.
#
#   ./install.sh --dev     development checkout: OS packages + .venv with an editable install
#                          and the test extra (what CI runs before the tests)
#
# The system and --user installs (units, virtualenv under /opt/trading or
# ~/.local/share/trading) are described in docs/operations.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# OS packages: libsystemd-dev + pkg-config build systemd-python (source-only on PyPI);
# redis-server is used by the event-bus tests; systemd provides systemd-socket-activate.
os_packages=(libsystemd-dev pkg-config gcc python3-venv systemd redis-server)

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
    install_os_packages "${os_packages[@]}"
    if [ ! -x "$here/.venv/bin/python" ]; then
        say "creating $here/.venv"
        "$python" -m venv "$here/.venv"
    fi
    "$here/.venv/bin/python" -m pip install -q --upgrade pip
    "$here/.venv/bin/python" -m pip install -q -e "$here[test]"
    say "development install ready: $here/.venv (run tests with .venv/bin/python -m pytest)"
}

case "${1:-}" in
    --dev) dev_install ;;
    *) die "usage: install.sh --dev" ;;
esac
