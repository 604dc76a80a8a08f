"""Single-level PixelCNN baseline (paper Appendix D): train -> checkpoint -> sample -> exact NLL.

A card without ``[[level]]`` tables puts the class-conditional gated PixelCNN directly on the
pixels; its NLL is exact, and Table 1 shows it as such beside the hierarchies' joint bounds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hvqeval.cli import cli
from models.config import load_card

STEPS = 40  # enough to move the softmaxes well away from uniform (the chain-rule check below bites)
SIZE = 8  # 8 x 8 x 3 = 192 sub-pixels per image
TINY = [
    "--set",
    f"model.image_size={SIZE}",
    "--set",
    "prior.layers=2",
    "--set",
    "prior.hidden=12",
    "--set",
    "prior.residual_hidden=12",
    "--set",
    "prior.training.batch_size=4",
    "--set",
    "prior.training.learning_rate=1e-2",
    "--set",
    "prior.training.polyak_decay=0.0",
]


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("baseline")
    out = _cli(
        "train",
        "--config",
        "tiny_pixelcnn",
        *TINY,
        "--out",
        root / "run",
        "--all",
        "--steps",
        STEPS,
        "--workers",
        0,
        "--limit",
        8,
        "--device",
        "cpu",
    )
    assert out.exit_code == 0, out.output
    return root / "run"


def test_shipped_baseline_card_is_appendix_d():
    card = load_card("pixelcnn_baseline")
    assert card.is_single_level and card.level == ()
    # Appendix D: 20 layers, 384 hidden units, 1024 units in the residual connections, 64x64 images.
    p = card.prior
    assert (p.layers, p.hidden, p.residual_hidden, p.attention_layers, card.model.image_size) == (
        20,
        384,
        1024,
        0,
        64,
    )
    # What the PixelCNN models: the pixels, 3 channels of 256 values.
    assert (card.top_codes.channels, card.top_codes.num_codes, card.top_codes.resolution) == (
        3,
        256,
        64,
    )


def test_one_batch_train_checkpoint_and_samples(run, tmp_path):
    from models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run / "prior.pt")
    assert ckpt["step"] == STEPS and ckpt["model_config"]["stage"] == "prior"
    assert sorted(p.name for p in run.glob("*.pt")) == ["prior.pt"]  # no autoencoder stage
    out = _cli(
        "sample",
        "--run",
        run,
        "--classes",
        "0,3",
        "--per-class",
        2,
        "--out",
        tmp_path / "s",
        "--device",
        "cpu",
        "--json",
    )
    assert out.exit_code == 0, out.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [f["class_id"] for f in manifest["files"]] == [0, 0, 3, 3]
    pixels = np.stack(
        [np.asarray(Image.open(tmp_path / "s" / f["file"])) for f in manifest["files"]]
    )
    assert pixels.shape == (4, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    assert len(np.unique(pixels)) > 10  # sampled from 256-way softmaxes, not a constant image


def _chain_rule_bits(prior, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log2 p of every sub-pixel by the chain rule, one forward pass per sub-pixel: (B, C, H, W).

    For sub-pixel (i, j, c) in raster order, every sub-pixel from it on is replaced by random
    values, so the conditional cannot see them; the parallel (masked) pass must agree.
    """
    b, c, h, w = x.shape
    gen = torch.Generator().manual_seed(0)
    bits = torch.empty(b, c, h, w, dtype=torch.float64)
    order = [(i, j, k) for i in range(h) for j in range(w) for k in range(c)]
    for n, (i, j, k) in enumerate(order):
        scrambled = x.clone().permute(0, 2, 3, 1).reshape(b, -1)  # (B, H*W*C) raster order
        scrambled[:, n:] = torch.randint(0, 256, scrambled[:, n:].shape, generator=gen)
        scrambled = scrambled.view(b, h, w, c).permute(0, 3, 1, 2)
        logits = prior(scrambled, y)[:, k, :, i, j].double()  # (B, 256)
        bits[:, k, i, j] = -torch.log_softmax(logits, dim=1).gather(1, x[:, k, i, j, None]).squeeze(
            1
        ) / math.log(2)
    return bits


def test_nll_is_exact_and_equals_chain_rule_bits_per_dim(run, tmp_path):
    from analysis.results import load_results
    from analysis.sections import table1_section
    from models.checkpoint import load_run
    from models.stage_data import open_images

    results = tmp_path / "results.jsonl"
    out = _cli("nll", "--run", run, "--limit", 3, "--device", "cpu", "--json", "--results", results)
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["nll_kind"] == "exact" and list(report["terms"]) == ["prior"]

    card = load_card("tiny_pixelcnn", TINY[1::2])
    dataset = open_images(card, "shapes", "val", train=False)
    x = torch.stack([dataset[i][0] for i in range(3)]).long()  # (3, 3, 8, 8)
    y = torch.tensor([dataset[i][1] for i in range(3)])
    prior = load_run(run, require_prior=True).prior
    with torch.no_grad():
        bits = _chain_rule_bits(prior, x, y)
    assert report["total"]["bpd"] == pytest.approx(float(bits.mean()), rel=1e-6)
    assert float(bits.mean()) < 7.8  # trained: better than the 8 bits of a uniform softmax
    per_image = bits.flatten(1).mean(1)
    assert report["total"]["stderr"] == pytest.approx(
        float(per_image.std() / math.sqrt(3)), rel=1e-4
    )

    # Table 1 shows the baseline's NLL as exact, beside a hierarchy's bound.
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["extra"]["nll_kind"] for r in rows} == {"exact"}
    bound = dict(
        rows[0], model="tiny_ff", value=3.0, extra={**rows[0]["extra"], "nll_kind": "bound"}
    )
    results.write_text("".join(json.dumps(r) + "\n" for r in rows + [bound]))
    section = table1_section(load_results(results))
    kinds = dict(zip(section.table["model"], section.table["nll_kind"]))
    assert kinds == {"tiny_pixelcnn": "exact", "tiny_ff": "bound"}
    shown = dict(zip(section.display["Model"], section.display["Joint NLL"]))
    assert shown["tiny_pixelcnn"].endswith("(exact)") and not shown["tiny_ff"].endswith("(exact)")


def test_commands_that_need_codes_refuse_a_single_level_run(run, tmp_path):
    calls = [
        [
            "reconstruct",
            "--run",
            run,
            "--images",
            "shapes:val",
            "--limit",
            1,
            "--samples-per-image",
            1,
            "--out",
            tmp_path / "r",
            "--device",
            "cpu",
        ],
        ["predictability", "--run", run, "--level", 1, "--steps", 1, "--no-results"],
        ["train", "--out", run, "--level", 1, "--steps", 1],
    ]
    for args in calls:
        out = _cli(*args)
        assert out.exit_code == 1, (args[0], out.output)
        assert "single-level PixelCNN" in out.output and "Traceback" not in out.output
