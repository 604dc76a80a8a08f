"""Whole hierarchies: a one-batch train -> checkpoint -> reload smoke test for every card,
the paper's cards built at their real sizes, encode / per-level NLL / sampling."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from models import Stage
from models.checkpoint import load_run
from models.config import list_cards, load_card
from models.hierarchy import build_stage_model
from models.stage_data import open_level_input
from models.summary import count_parameters
from models.train import TrainOptions, train_stage

sys.path.insert(0, str(Path(__file__).parent))
from small_cards import small_card  # noqa: E402

PAPER_CARDS = ["imagenet128_ff", "imagenet128_msp", "imagenet256_ff", "imagenet256_msp"]
OPTIONS = TrainOptions(steps=1, num_workers=0, progress=False, limit=4, log_every=1)


def _train_all(card, run_dir):
    return [train_stage(card, run_dir, stage, options=OPTIONS) for stage in Stage.all_of(card)]


@pytest.mark.parametrize("name", list_cards())
def test_one_batch_train_checkpoint_reload_every_card(name, tmp_path):
    """Every card's structure (levels, aux decoder kinds, code channels) at CPU widths."""
    card = small_card(name, batch=2)
    results = _train_all(card, tmp_path)
    assert [r.step for r in results] == [1] * (len(card.level) + 1)
    assert all(math.isfinite(r.metrics["loss"]) for r in results)
    hierarchy = load_run(tmp_path, require_prior=True)
    x, y = zip(
        *[open_level_input(card, 0, tmp_path, None, "val", train=False)[i] for i in range(2)]
    )
    x, y = torch.stack(x), torch.tensor(y)
    codes = hierarchy.encode(x)
    assert [tuple(c.shape[1:]) for c in codes] == [
        (lvl.codes.channels, lvl.codes.resolution, lvl.codes.resolution) for lvl in card.level
    ]
    terms = hierarchy.nll_terms(x, y)
    assert list(terms) == Stage.all_of(card)
    for stage, value in terms.items():
        assert value.shape == (2,) and torch.isfinite(value).all() and (value > 0).all(), stage
    # The prior term is the prior's NLL of the top codes the encoders produce (of the pixels
    # for a single-level card).
    assert torch.allclose(terms["prior"], hierarchy.prior.nll(([x] + codes)[-1], y))


def test_tiny_cards_at_real_size_train_and_reload(tmp_path):
    for name in ("tiny_ff", "tiny_msp"):
        card = load_card(name, ["level.0.training.batch_size=2", "prior.training.batch_size=2"])
        _train_all(card, tmp_path / name)
        hierarchy = load_run(tmp_path / name, require_prior=True)
        x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
        assert hierarchy.encode(x)[0].shape == (1, 1, 8, 8)
        assert torch.isfinite(hierarchy.nll_terms(x, torch.tensor([3]))["level1"]).all()


def test_sampling_and_reconstruction_shapes(tmp_path):
    card = small_card("imagenet256_msp", image_size=8, batch=2)
    _train_all(card, tmp_path)
    hierarchy = load_run(tmp_path, require_prior=True)
    g = torch.Generator().manual_seed(0)
    images = hierarchy.sample(torch.tensor([1, 2]), generator=g)
    assert images.shape == (2, 3, 8, 8) and 0 <= int(images.min()) and int(images.max()) <= 255
    x = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    assert hierarchy.reconstruct(x, from_level=1, generator=g).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("name", PAPER_CARDS)
def test_paper_cards_build_and_run_at_real_size_on_meta_device(name):
    """Every network of the paper's cards at its real width, depth and training crop (shapes only)."""
    card = load_card(name)
    with torch.device("meta"):
        for i, level in enumerate(card.level):
            model = build_stage_model(card, f"level{i + 1}").eval()
            channels, values, resolution = card.level_input(i)
            crop = min(level.training.crop, resolution)
            x = torch.empty(2, channels, crop, crop, dtype=torch.long)
            codes = model.quantizer.encode(model.encoder_features(x))
            side = crop // (resolution // level.codes.resolution)
            assert codes.shape == (2, level.codes.channels, side, side)
            aux = model.aux_decoder(model.quantizer.lookup(codes))
            assert aux.shape[-2:] == (crop, crop)
            assert model.decoder(x, codes).shape == (2, channels, values, crop, crop)
            if model.is_msp:
                visible = torch.ones(2, 1, crop, crop, dtype=torch.bool)
                assert model.teacher_logits(x, visible).shape == (2, channels, values, crop, crop)
        prior = build_stage_model(card, "prior").prior.eval()
        top = card.top_codes
        z = torch.empty(2, top.channels, top.resolution, top.resolution, dtype=torch.long)
        logits = prior(z, torch.zeros(2, dtype=torch.long))
        assert logits.shape == (2, top.channels, top.num_codes, top.resolution, top.resolution)
    counts = {(r.stage, r.network): r.parameters for r in count_parameters(card)}
    # Appendix A.1.1: 16-layer encoder of 512 hiddens with a 128 bottleneck ->
    # per block 3*3*512*128 + 128 + 128*512 + 512 = 655,488 weights, x16 = 10.5M before stem/head.
    if name == "imagenet128_ff":
        assert counts[("level1", "encoder")] > 16 * 655_488


def test_parameter_counts_match_hand_count_and_show_prints_them():
    from click.testing import CliRunner

    from hvqeval.cli import cli

    counts = {
        (r.stage, r.network): (r.parameters, r.buffers)
        for r in count_parameters(load_card("tiny_ff"))
    }
    # tiny_ff encoder (3 -> hidden 64, bottleneck 32, 2 blocks, 32x32 -> 8x8, one 64-feature code channel):
    #   stem 3x3 conv 3->64            3*64*9 + 64            =   1,792
    #   2 blocks: 3x3 64->32, 1x1 32->64   2 * (18,464 + 2,112) =  41,152
    #   head 1x1 64->64                64*64 + 64             =   4,160
    #   2 strided 4x4 convs 64->64     2 * (64*64*16 + 64)    = 131,200
    #   projection 1x1 64->64          64*64 + 64             =   4,160   -> 182,464
    assert counts[("level1", "encoder")] == (182_464, 0)
    # Codebook buffers: embedding 64x64 + cluster sizes 64 + sums 64x64 + 2 counters = 8,258; no weights.
    assert counts[("level1", "quantizer")] == (0, 8_258)
    result = CliRunner().invoke(cli, ["models", "show", "tiny_ff"])
    assert result.exit_code == 0
    total = sum(p for (stage, _), (p, _) in counts.items() if stage == "level1")
    assert f"level1: {total / 1e6:.1f}M ({total:,})" in result.output
