"""Model cards: the paper's numbers are all there, and bad cards fail with one clear line."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli
from models.config import (
    MSP_MASKS_PER_IMAGE,
    card_from_dict,
    compression_ratio,
    list_cards,
    load_card,
    read_card_data,
)
from models.errors import ConfigError

PAPER_CARDS = ["imagenet128_ff", "imagenet128_msp", "imagenet256_ff", "imagenet256_msp"]


def test_all_cards_load():
    assert set(PAPER_CARDS + ["tiny_ff", "tiny_msp"]) <= set(list_cards())
    for name in list_cards():
        card = load_card(name)
        assert card.name == name
        # The resolved card survives a JSON round trip (it is saved with every run/checkpoint).
        assert card_from_dict(json.loads(card.to_json())) == card


@pytest.mark.parametrize(
    "name, table4",
    [
        # Table 4 columns: l, h, r, timing, a, ah, do, bs, iters
        ("imagenet128_ff", (20, 640, 2048, "add", 6, 10, 0.2, 2048, 490200)),
        ("imagenet128_msp", (20, 640, 2048, "add", 5, 10, 0.1, 2048, 267000)),
        ("imagenet256_ff", (20, 640, 2048, "concat", 5, 15, 0.0, 2048, 422700)),
        ("imagenet256_msp", (20, 640, 2048, "add", 5, 10, 0.1, 2048, 185000)),
    ],
)
def test_priors_match_table4(name, table4):
    p = load_card(name).prior
    got = (
        p.layers,
        p.hidden,
        p.residual_hidden,
        p.timing,
        p.attention_layers,
        p.attention_heads,
        p.dropout,
        p.training.batch_size,
        p.training.iterations,
    )
    assert got == table4
    assert p.training.polyak_decay == 0.9999 and p.training.optimizer == "adam"


def test_imagenet128_ff_matches_appendix_a11():
    card = load_card("imagenet128_ff")
    (lvl,) = card.levels
    assert (lvl.codes.channels, lvl.codes.bits, lvl.codes.resolution) == (1, 9, 32)  # 512 bins
    assert (lvl.encoder.layers, lvl.encoder.hidden, lvl.encoder.bottleneck) == (16, 512, 128)
    assert (lvl.modulator.layers, lvl.modulator.hidden, lvl.modulator.bottleneck) == (16, 512, 128)
    assert (lvl.aux_decoder.kind, lvl.aux_decoder.layers) == ("feedforward", 2)
    assert (lvl.local_model.layers, lvl.local_model.hidden) == (16, 128)
    assert (lvl.training.iterations, lvl.training.crop, lvl.training.polyak_decay) == (
        300000,
        64,
        0.9999,
    )


def test_imagenet128_msp_matches_appendix_a12():
    (lvl,) = load_card("imagenet128_msp").levels
    aux = lvl.aux_decoder
    assert (aux.kind, aux.layers, aux.hidden, aux.mask_size, aux.masks_per_image) == (
        "msp",
        8,
        128,
        3,
        30,
    )
    assert (aux.teacher.layers, aux.teacher.hidden) == (16, 128)
    assert (lvl.encoder.layers, lvl.encoder.hidden, lvl.modulator.layers) == (16, 128, 16)
    assert (lvl.codes.bits, lvl.local_model.layers, lvl.training.iterations) == (8, 20, 200000)


def test_256_cards_match_appendix_a2_and_section_72_compression():
    ff = load_card("imagenet256_ff")
    l1, l2 = ff.levels
    assert (
        l1.codes.resolution,
        l1.encoder.layers,
        l1.aux_decoder.layers,
        l1.local_model.layers,
    ) == (128, 4, 1, 8)
    assert (
        l2.encoder.hidden,
        l2.encoder.bottleneck,
        l2.aux_decoder.layers,
        l2.local_model.hidden,
    ) == (1024, 256, 12, 384)
    # Section 7.2: factors 12x and 16x for FF, 16x and 12x for MSP; 48x for 128x128 with 8 bits.
    assert [compression_ratio(ff, i) for i in range(2)] == [12.0, 16.0]
    msp = load_card("imagenet256_msp")
    m1, m2 = msp.levels
    assert (
        m1.codes.channels,
        m1.codes.resolution,
        m1.aux_decoder.mask_size,
        m1.aux_decoder.masks_per_image,
    ) == (3, 64, 5, 10)
    assert (m2.aux_decoder.layers, m2.aux_decoder.mask_size, m2.aux_decoder.masks_per_image) == (
        8,
        3,
        30,
    )
    assert [compression_ratio(msp, i) for i in range(2)] == [16.0, 12.0]
    assert compression_ratio(load_card("imagenet128_msp"), 0) == 48.0


def test_masks_per_image_default_follows_appendix_a():
    assert [MSP_MASKS_PER_IMAGE[s] for s in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19)] == [
        30,
        30,
        10,
        10,
        3,
        3,
        3,
        3,
        1,
        1,
    ]
    data, _ = read_card_data("tiny_msp")
    data["level"][0]["aux_decoder"]["mask_size"] = 7
    del data["level"][0]["aux_decoder"]["masks_per_image"]
    assert card_from_dict(data).levels[0].aux_decoder.masks_per_image == 10


def _broken(mutate):
    data, _ = read_card_data("tiny_msp")
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["model"].update(colour="red"),
            "unknown key 'model.colour'; allowed keys here: ",
        ),
        (
            lambda d: d["level"][0]["codes"].update(bits=17),
            "key 'level\\[0\\].codes.bits' must be in 1..16, got 17",
        ),
        (
            lambda d: d["level"][0]["codes"].update(bits="8"),
            "key 'level\\[0\\].codes.bits' must be an integer",
        ),
        (
            lambda d: d["level"][0]["codes"].update(resolution=12),
            "'level\\[0\\].codes.resolution' = 12 must divide the input resolution 32",
        ),
        (
            lambda d: d["level"][0]["aux_decoder"].update(mask_size=4),
            "mask_size' must be an odd integer",
        ),
        (
            lambda d: d["level"][0]["aux_decoder"].update(kind="vae"),
            "must be one of 'feedforward', 'msp', got 'vae'",
        ),
        (
            lambda d: d["prior"].update(timing="mul"),
            "key 'prior.timing' must be one of 'add', 'concat'",
        ),
        (lambda d: d["prior"].update(dropout=1.5), "key 'prior.dropout' must be in \\[0, 1\\)"),
        (lambda d: d["prior"].pop("layers"), "missing key 'prior.layers'"),
        (
            lambda d: d["prior"]["training"].update(batch_size=True),
            "batch_size' must be an integer",
        ),
        (
            lambda d: d["level"][0]["aux_decoder"].pop("teacher"),
            "missing table 'level\\[0\\].aux_decoder.teacher'",
        ),
    ],
)
def test_bad_cards_name_key_and_allowed_values(mutate, message):
    with pytest.raises(ConfigError, match=message):
        card_from_dict(_broken(mutate), "cards/broken.toml")


def test_feedforward_card_refuses_msp_only_keys():
    data, _ = read_card_data("tiny_ff")
    data["level"][0]["aux_decoder"]["mask_size"] = 3
    with pytest.raises(ConfigError, match="only applies to kind 'msp'"):
        card_from_dict(data, "x.toml")


def test_overrides_apply_and_typos_fail():
    card = load_card("tiny_ff", ["level.0.training.iterations=7", "prior.dropout=0.1"])
    assert card.levels[0].training.iterations == 7 and card.prior.dropout == 0.1
    with pytest.raises(ConfigError, match="override key 'levels.0.x' does not exist"):
        load_card("tiny_ff", ["levels.0.x=1"])
    with pytest.raises(ConfigError, match="unknown key 'prior.dropuot'"):
        load_card("tiny_ff", ["prior.dropuot=0.1"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_card("tiny_ff", ["prior.dropout"])


def test_cards_are_frozen():
    card = load_card("tiny_ff")
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.prior.layers = 3  # type: ignore[misc]


def test_cli_show_prints_every_table4_and_appendix_number():
    result = CliRunner().invoke(cli, ["models", "show", "imagenet128_ff"])
    assert result.exit_code == 0
    out = result.output
    for line in [
        "layers = 20   (l)",
        "hidden = 640   (h)",
        "residual_hidden = 2048   (r)",
        'timing = "add"   (timing)',
        "attention_layers = 6   (a)",
        "attention_heads = 10   (ah)",
        "dropout = 0.2   (do)",
        "batch_size = 2048   (bs)",
        "iterations = 490200   (iters)",
        "bits = 9",
        "iterations = 300000",
        "polyak_decay = 0.9999",
        "crop = 64",
        'optimizer = "adam"',
    ]:
        assert line in out, line
    as_json = json.loads(
        CliRunner().invoke(cli, ["models", "show", "imagenet128_ff", "--json"]).output
    )
    assert as_json["prior"]["attention_layers"] == 6


def test_cli_bad_card_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    _, source = read_card_data("tiny_ff")
    text = open(source).read().replace("bits = 6", "bits = 20")
    path.write_text(text)
    result = CliRunner().invoke(cli, ["models", "show", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert str(path) in lines[0] and "level[0].codes.bits" in lines[0] and "1..16" in lines[0]
    result = CliRunner().invoke(cli, ["models", "show", "no_such_card"])
    assert result.exit_code == 1 and "unknown model card 'no_such_card'" in result.output
    assert "Traceback" not in result.output
