"""A run folder started with other --set values: the error names the value, not "card X differs from card X"."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli
from hvqeval.demo.plan import DEMO_CARD_SETTINGS


def test_same_card_other_settings_names_the_value_that_differs(tmp_path):
    run = str(tmp_path / "run")
    settings = [arg for s in DEMO_CARD_SETTINGS["msp"] for arg in ("--set", s)]
    base = [
        "train",
        "--out",
        run,
        "--level",
        "1",
        "--steps",
        "1",
        "--workers",
        "0",
        "--limit",
        "32",
    ]
    first = CliRunner().invoke(cli, base + ["--config", "tiny_msp", *settings])
    assert first.exit_code == 0, first.output
    # The same card without the demo's settings (what a user types from a suggestion).
    result = CliRunner().invoke(cli, base + ["--config", "tiny_msp"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "differs from this card 'tiny_msp'" not in errors[0]
    # The first differing key in sorted order with its value in the run and in this command.
    assert "level.0.aux_decoder.bottleneck = 16, but this card gives" in errors[0]
    assert "continue the run with the card and overrides it was started with" in errors[0]
    # Leaving them out continues the run as the message says.
    ok = CliRunner().invoke(
        cli,
        ["train", "--out", run, "--level", "1", "--steps", "2", "--workers", "0", "--limit", "32"],
    )
    assert ok.exit_code == 0, ok.output

    # Loading its checkpoint with the card's plain values names the value too.
    from models.checkpoint import load_checkpoint
    from models.config import load_card
    from models.errors import CheckpointError

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "run" / "level1.pt", load_card("tiny_msp", ()), "level1")
    assert "differs from card 'tiny_msp'" not in str(err.value)
    assert "was trained with level.0.aux_decoder.bottleneck = 16, not" in str(err.value)
