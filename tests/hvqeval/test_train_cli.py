"""``hvqeval train`` errors: the library names the problem, the command line adds its options."""

from click.testing import CliRunner

from hvqeval.cli import cli
from models import init_run_dir, load_card


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def test_a_stage_whose_input_is_missing_prints_the_command_that_trains_it(tmp_path):
    result = run(
        "train", "--config", "tiny_ff", "--out", tmp_path / "run", "--prior", "--device", "cpu"
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --out: {tmp_path / 'run'} has no trained level 1 (level1.pt missing); train that stage "
        f"first: hvqeval train --config tiny_ff --out {tmp_path / 'run'} --level 1"
    )


def test_a_run_folder_of_another_card_names_the_option(tmp_path):
    init_run_dir(tmp_path / "run", load_card("tiny_ff"))
    result = run("train", "--config", "tiny_msp", "--out", tmp_path / "run", "--level", 1)
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: --out: run folder {tmp_path / 'run'} was started with card 'tiny_ff'"
    )
    assert "use a new run folder, or the same card and overrides" in result.output


def test_sampling_from_a_folder_that_is_not_a_run_names_the_run_option(tmp_path):
    result = run("sample", "--run", tmp_path, "--per-class", 1, "--out", tmp_path / "s")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --run: {tmp_path} is not a run folder (no config.json); "
        "train a model into it first\n"
    )


def test_a_bad_device_is_a_usage_error_naming_the_option(tmp_path):
    init_run_dir(tmp_path / "run", load_card("tiny_ff"))
    result = run("nll", "--run", tmp_path / "run", "--device", "warp-drive")
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output
    assert "'warp-drive' is not a device; use cpu, cuda or cuda:N" in result.output
