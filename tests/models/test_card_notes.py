"""Model cards say which values are interpretations or not in the paper, and `models show` prints it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli
from models.config import card_from_dict, compression_ratio, load_card, read_card_data
from models.errors import ConfigError

PAPER_CARDS = ["imagenet128_ff", "imagenet128_msp", "imagenet256_ff", "imagenet256_msp"]


def kinds(card, key):
    return {note.kind for note in card.notes_for(key)}


@pytest.mark.parametrize("name", PAPER_CARDS)
def test_table4_r_and_timing_are_marked_as_interpretations(name):
    card = load_card(name)
    assert kinds(card, "prior.residual_hidden") == {"interpretation"}
    assert kinds(card, "prior.timing") == {"interpretation"}
    assert (
        "residual filter size" in card.notes_for("prior.residual_hidden")[0].text
    )  # Table 4's words


def test_level_two_aux_decoder_width_of_imagenet256_ff_is_not_in_paper():
    card = load_card("imagenet256_ff")
    assert kinds(card, "level.1.aux_decoder.hidden") == {"not in paper"}
    assert card.level[1].aux_decoder.layers == 12  # the depth is the paper's (A.2.1)


def test_imagenet128_ff_states_the_papers_48x_beside_its_9_bit_figure():
    card = load_card("imagenet128_ff")
    (note,) = card.notes_for("level.0.codes.bits")
    assert note.kind == "paper convention"
    nine_bit = compression_ratio(card, 0)  # 128*128*3*8 / (32*32*9) = 42.67
    assert nine_bit == pytest.approx(128 * 128 * 3 * 8 / (32 * 32 * 9))
    assert f"{nine_bit:.1f}x" in note.text and "48x" in note.text and "8-bit" in note.text
    # The paper's convention (Section 7.2, footnote 3) is the same level counted at 8 bits per code.
    assert compression_ratio(load_card("imagenet128_ff", ["level.0.codes.bits=8"]), 0) == 48


def test_models_show_prints_the_notes():
    result = CliRunner().invoke(cli, ["models", "show", "imagenet256_ff"])
    assert result.exit_code == 0, result.output
    notes = result.output.split("\nnotes:\n", 1)[1]
    assert "level.1.aux_decoder.hidden (not in paper)" in notes
    assert "prior.residual_hidden (interpretation)" in notes
    assert "prior.timing (interpretation)" in notes


def test_a_note_on_a_key_the_card_lacks_is_one_clear_error():
    data, source = read_card_data("tiny_ff")
    data["note"] = [{"key": "prior.residual_width", "kind": "interpretation", "text": "typo"}]
    with pytest.raises(
        ConfigError, match="note\\[0\\].key 'prior.residual_width' is not a key of this card"
    ):
        card_from_dict(data, source)
    data["note"] = [{"key": "prior.layers", "kind": "guess", "text": "x"}]
    with pytest.raises(ConfigError, match="note\\[0\\].kind"):
        card_from_dict(data, source)


@pytest.mark.parametrize("name", PAPER_CARDS + ["tiny_ff"])
def test_notes_survive_the_resolved_card_round_trip(name):
    card = load_card(name)
    assert card_from_dict(card.to_dict(), "config.json") == card
