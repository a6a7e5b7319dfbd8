"""The lazy command line (issue 19): ``trading --help`` lists every command from the table in
trading.cli.main without importing a command module, a command imports only its own module,
and nothing heavy is on the everyday paths. Speed itself is bench/bench_cli.py's to measure;
these tests keep the imports that decide it from creeping back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trading.cli.main import COMMANDS, load_command

HEAVY = ("numpy", "pandas", "yfinance", "matplotlib", "sklearn", "scipy", "holidays",
         "pydantic", "trading.ops.systemd", "trading.runtime.store")


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter has imported after ``trading ARGV`` ran."""
    code = ("import sys, json\n"
            "from trading.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\n"
            "finally:\n    print('\\n' + json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"}, timeout=60)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_table_says_what_each_command_says_of_itself(name):
    assert load_command(name).get_short_help_str(500) == COMMANDS[name][1]


def test_help_lists_every_command_with_its_line_and_imports_no_command_module():
    modules = imported_by("--help")
    loaded = {m for m in modules if m.startswith("trading.cli.")} - {"trading.cli.main",
                                                                    "trading.cli.common"}
    assert loaded == set()
    assert not modules & set(HEAVY), modules & set(HEAVY)
    assert "rich" not in modules  # typer's rich help imports markdown-it: plain help


def test_help_shows_each_whole_line():
    from typer.testing import CliRunner

    from trading.cli.main import app

    text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    for name, (_, line) in COMMANDS.items():
        assert f"{name} {line}" in text


@pytest.mark.parametrize("argv,own", [
    (["history", "-n", "1"], "trading.cli.predict"),
    (["call", "prediction", "health_check"], "trading.cli.services"),
])
def test_an_everyday_command_imports_only_its_own_module_and_nothing_heavy(argv, own):
    modules = imported_by("--in-process", *argv)
    cli = {m for m in modules if m.startswith("trading.cli.")}
    assert cli == {"trading.cli.main", "trading.cli.common", own}
    heavy = {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY}
    # in-process, the prediction handler opens the store: that is the handler's, not the CLI's
    heavy -= {"trading.runtime.store"}
    assert heavy == set(), f"heavy imports on `trading {' '.join(argv)}`: {sorted(heavy)}"
