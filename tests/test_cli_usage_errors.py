"""A mistyped option value or an unknown option is one line naming it, with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli


@pytest.mark.parametrize(
    "args, names, where",
    [
        (
            ["report", "table3", "--responses", "x.csv", "--min-check-pass", "75"],
            "'--min-check-pass': 75.0 is not in the range",
            "hvqeval report table3 --help",
        ),
        (["sample", "--run", "r", "--per-class", "abc"], "'--per-class'", "hvqeval sample --help"),
        (
            ["metrics", "--no-such-flag"],
            "No such option '--no-such-flag'",
            "hvqeval metrics --help",
        ),
        (["no-such-command"], "No such command 'no-such-command'", "hvqeval --help"),
    ],
)
def test_usage_errors_are_one_line(args, names, where):
    result = CliRunner().invoke(cli, args, prog_name="hvqeval")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and names in lines[0] and where in lines[0]
    assert "Usage:" not in result.output


def test_the_console_command_prints_the_same_line():
    done = subprocess.run(
        [sys.executable, "-m", "hvqeval", "report", "table2", "--min-check-pass", "1.5"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "'--min-check-pass'" in done.stderr
