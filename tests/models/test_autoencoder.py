"""One autoencoder level: MSP masks and losses (Algorithm 3), stop-gradient, input encodings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.autoencoder import LevelModel, OneHotLinear, msp_losses, sample_msp_masks
from models.config import load_card

# CPU-sized versions of the tiny cards: 16x16 images, 4x4 codes, narrow networks.
SMALL = [
    "model.image_size=16",
    "level.0.codes.resolution=4",
    "level.0.codes.bits=4",
    "level.0.encoder.hidden=16",
    "level.0.encoder.bottleneck=8",
    "level.0.aux_decoder.hidden=16",
    "level.0.aux_decoder.bottleneck=8",
    "level.0.modulator.hidden=16",
    "level.0.modulator.bottleneck=8",
    "level.0.local_model.layers=2",
    "level.0.local_model.hidden=6",
]
SMALL_MSP = SMALL + [
    "level.0.aux_decoder.teacher.hidden=16",
    "level.0.aux_decoder.teacher.bottleneck=8",
]


def small_level(kind: str) -> LevelModel:
    torch.manual_seed(0)
    card = load_card(
        "tiny_ff" if kind == "ff" else "tiny_msp", SMALL if kind == "ff" else SMALL_MSP
    )
    return LevelModel(card, 0)


def test_msp_masks_cover_squares_around_middles():
    g = torch.Generator().manual_seed(3)
    visible, middles = sample_msp_masks(4, 12, 10, mask_size=3, count=5, generator=g)
    assert visible.shape == middles.shape == (4, 1, 12, 10)
    assert middles.sum((1, 2, 3)).tolist() == [5, 5, 5, 5]  # distinct middles per image
    for b in range(4):
        expected = torch.ones(12, 10, dtype=torch.bool)
        for i, j in middles[b, 0].nonzero().tolist():
            expected[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2] = False  # 3x3 square, clipped
        assert torch.equal(visible[b, 0], expected)
    # Every middle is itself masked, so the teacher never sees the value it predicts.
    assert not (visible & middles).any()


def test_msp_masks_size_one_hides_only_the_middle():
    visible, middles = sample_msp_masks(
        2, 6, 6, mask_size=1, count=3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(visible, ~middles)


def test_one_hot_masked_positions_are_zero_and_differ_from_black():
    layer = OneHotLinear(channels=3, values=256, out_channels=5)
    black = torch.zeros(1, 3, 2, 2, dtype=torch.long)
    visible = torch.tensor([[[[True, False], [True, True]]]])
    out = layer(black, visible)
    assert torch.equal(out[0, :, 0, 1], torch.zeros(5))  # masked: all-zero one-hot -> 0
    # A black pixel is one-hot [1, 0, ...] per channel: the sum of the value-0 rows.
    expected_black = layer.weight[0] + layer.weight[256] + layer.weight[512]
    assert torch.allclose(out[0, :, 0, 0], expected_black)
    assert expected_black.abs().sum() > 0
    # Equivalent to a 1x1 conv on the explicit one-hot tensor.
    x = torch.randint(0, 256, (2, 3, 3, 3))
    hot = F.one_hot(x, 256).permute(0, 1, 4, 2, 3).reshape(2, 768, 3, 3).float()
    conv = F.conv2d(hot, layer.weight.t().reshape(5, 768, 1, 1))
    assert torch.allclose(layer(x), conv, atol=1e-5)


def test_teacher_output_is_invariant_to_masked_content():
    model = small_level("msp")
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=g)
    visible, _ = sample_msp_masks(2, 16, 16, 3, 6, generator=g)
    other = torch.where(visible, x, torch.randint(0, 256, x.shape, generator=g))
    assert not torch.equal(other, x)
    with torch.no_grad():
        a = model.teacher_logits(x, visible)
        b = model.teacher_logits(other, visible)
        c = model.teacher_logits(other, torch.ones_like(visible))  # sanity: unmasked it does change
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_msp_losses_only_count_middle_positions():
    torch.manual_seed(0)
    b, c, v, h, w = 2, 3, 5, 4, 4
    teacher, student = torch.randn(b, c, v, h, w), torch.randn(b, c, v, h, w, requires_grad=True)
    x = torch.randint(0, v, (b, c, h, w))
    middles = torch.zeros(b, 1, h, w, dtype=torch.bool)
    middles[0, 0, 1, 2] = middles[1, 0, 3, 0] = True
    nll, kl = msp_losses(teacher, student, x, middles)
    kl.backward()
    grad_at = student.grad.abs().sum(2)  # (B, C, H, W)
    assert (grad_at[middles.expand(b, c, h, w)] > 0).all()
    assert (grad_at[~middles.expand(b, c, h, w)] == 0).all()
    # Hand check: mean over the 2 middles x 3 channels of -log softmax(teacher)[x] and of KL.
    rows = [(0, 1, 2), (1, 3, 0)]
    want_nll = (
        sum(
            -F.log_softmax(teacher[i, ch, :, r, q], 0)[x[i, ch, r, q]]
            for i, r, q in rows
            for ch in range(c)
        )
        / 6
    )
    want_kl = (
        sum(
            F.kl_div(
                F.log_softmax(student[i, ch, :, r, q], 0),
                F.log_softmax(teacher[i, ch, :, r, q], 0),
                log_target=True,
                reduction="sum",
            )
            for i, r, q in rows
            for ch in range(c)
        )
        / 6
    )
    assert torch.isclose(nll, want_nll, atol=1e-6)
    assert torch.isclose(kl, want_kl, atol=1e-6)


def test_distillation_trains_student_not_teacher():
    model = small_level("msp")
    x = torch.randint(0, 256, (2, 3, 16, 16))
    out = model(x, generator=torch.Generator().manual_seed(0))
    teacher_nll = out.metrics["teacher_nll"]
    assert math.isfinite(float(teacher_nll))
    # The aux loss (L_MSP + L_dist) trains the teacher through L_MSP only; check via the graph:
    model.zero_grad()
    kl_only = (
        out.losses["aux"] - teacher_nll
    )  # teacher_nll is detached: this is L_MSP + L_dist - const
    kl_only.backward(retain_graph=True)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("kind", ["ff", "msp"])
def test_ar_decoder_loss_leaves_encoder_gradients_at_zero(kind):
    model = small_level(kind)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = model(x)
    out.losses["ar"].backward()
    encoder_params = list(model.encoder.parameters()) + list(model.quantizer.parameters())
    if model.encoder_input is not None:
        encoder_params += list(model.encoder_input.parameters())
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in encoder_params)
    assert all(p.grad is None for p in model.aux_decoder.parameters())
    # ... while the same loss does train the decoder (modulator and local model).
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.modulator.parameters()
    )
    # And the auxiliary loss does reach the encoder (straight-through).
    model.zero_grad()
    model(x).losses["aux"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_feedforward_level_one_uses_mse_in_pixel_space():
    model = small_level("ff")
    assert not model.one_hot_input and not model.predicts_logits
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = model(x)
    with torch.no_grad():
        q = model.quantizer.eval()(model.encoder_features(x))
        recon = model.aux_decoder(q.quantized)
    assert torch.isclose(
        out.metrics["aux_mse"], F.mse_loss(recon, x.float() / 127.5 - 1), atol=1e-5
    )
    assert out.codes.shape == (2, 1, 4, 4) and int(out.codes.max()) < 16
    # bits/dim reported is the AR decoder's NLL per sub-pixel in bits.
    assert torch.isclose(out.metrics["bpd"], out.metrics["ar_nats"] / math.log(2))


def test_higher_level_feedforward_uses_categorical_nll_over_codes():
    torch.manual_seed(0)
    card = load_card(
        "imagenet256_ff",
        [
            "level.1.encoder.hidden=8",
            "level.1.encoder.bottleneck=4",
            "level.1.encoder.layers=1",
            "level.1.aux_decoder.hidden=8",
            "level.1.aux_decoder.bottleneck=4",
            "level.1.aux_decoder.layers=1",
            "level.1.modulator.hidden=8",
            "level.1.modulator.bottleneck=4",
            "level.1.modulator.layers=1",
            "level.1.local_model.layers=1",
            "level.1.local_model.hidden=4",
        ],
    )
    model = LevelModel(card, 1)
    assert model.one_hot_input and model.predicts_logits
    z = torch.randint(0, 256, (1, 1, 128, 128))[..., :16, :16]  # a 16x16 crop of level-1 codes
    out = model(z)
    # Untrained logits are near uniform over 256 values: NLL close to log(256) = 5.55 nats.
    assert abs(float(out.metrics["aux_nll"]) - math.log(256)) < 1.0
    assert out.codes.shape == (1, 1, 4, 4)


def test_msp_training_losses_equal_the_full_map_losses():
    """The forward pass computes the teacher/student heads at the middles only; the losses
    must equal Algorithm 3 evaluated on the full logit maps with the same masks."""
    model = small_level("msp").eval()
    x = torch.randint(0, 256, (3, 3, 16, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x, generator=torch.Generator().manual_seed(9))
        aux = model.config.aux_decoder
        visible, middles = sample_msp_masks(
            3,
            16,
            16,
            aux.mask_size,
            aux.masks_per_image,
            generator=torch.Generator().manual_seed(9),
        )
        teacher = model.teacher_logits(x, visible)
        student = model._logits(
            model.aux_decoder(model.quantizer(model.encoder_features(x)).quantized)
        )
        want_nll, want_kl = msp_losses(teacher, student, x, middles)
    assert math.isclose(float(out.metrics["teacher_nll"]), float(want_nll), rel_tol=1e-5)
    assert math.isclose(
        float(out.metrics["distill_kl"]), float(want_kl), rel_tol=1e-5, abs_tol=1e-7
    )


def test_pixel_embeddings_start_ordinal_and_code_embeddings_do_not():
    """Level-1 input embeddings encode intensity smoothly (models.nn.ordinal); codes do not."""
    model = small_level("msp")
    emb = model.decoder.local.embedding.weight[:256]  # channel R: (256, width)
    near = F.cosine_similarity(emb[100], emb[101], dim=0)
    far = F.cosine_similarity(emb[100], emb[230], dim=0)
    assert near > 0.85 and far < near - 0.3
    enc = model.encoder_input.weight[:256]
    assert F.cosine_similarity(enc[10], enc[11], dim=0) > 0.85
    from models.hierarchy import build_stage_model

    prior = build_stage_model(load_card("tiny_ff", SMALL), "prior")
    codes = prior.prior.net.embedding.weight
    consecutive = F.cosine_similarity(codes[:-1], codes[1:], dim=1)  # code indices have no order
    assert consecutive.abs().mean() < 0.5
