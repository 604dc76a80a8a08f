"""Class-conditional prior with causal self-attention (Table 4): causality, no blind spot,
normalisation, the first position, the timing signal."""

import dataclasses
import itertools

import pytest
import torch

from models.config import load_card
from models.errors import ModelsError
from models.nn.attention import CausalSelfAttention, timing_signal
from models.prior import Prior, attention_positions


def prior_config(**changes):
    base = dict(
        layers=2,
        hidden=8,
        residual_hidden=12,
        attention_layers=1,
        attention_heads=3,
        dropout=0.0,
        kernel_size=3,
        timing="add",
    )
    base.update(changes)
    return dataclasses.replace(load_card("tiny_ff").prior, **base)


def dependencies(prior: Prior, height: int, width: int) -> torch.Tensor:
    """dep[c, i, j, c', i', j']: logits of (c, i, j) have non-zero gradient w.r.t. the
    embedding of sub-pixel (c', i', j') for some of 8 random inputs."""
    torch.manual_seed(0)
    net = prior.double().eval().net
    C, E = net.channels, net.embed_width
    emb = torch.randn(8, C * E, height, width, dtype=torch.float64, requires_grad=True)
    bias = prior.condition(torch.arange(8) % prior.num_classes)
    logits = net.forward_embedded(emb, bias)
    probe = torch.randn(net.values, dtype=torch.float64)
    dep = torch.zeros(C, height, width, C, height, width, dtype=torch.bool)
    for c, i, j in itertools.product(range(C), range(height), range(width)):
        (grad,) = torch.autograd.grad((logits[:, c, :, i, j] * probe).sum(), emb, retain_graph=True)
        dep[c, i, j] = grad.view(8, C, E, height, width).abs().sum(dim=(0, 2)) > 0
    return dep


def allowed(C, height, width):
    idx = list(itertools.product(range(C), range(height), range(width)))
    exp = torch.zeros(C, height, width, C, height, width, dtype=torch.bool)
    for (c, i, j), (c2, i2, j2) in itertools.product(idx, idx):
        exp[c, i, j, c2, i2, j2] = (i2, j2) < (i, j) or ((i2, j2) == (i, j) and c2 < c)
    return exp


@pytest.mark.parametrize("channels,timing", [(1, "add"), (2, "concat")])
def test_prior_with_attention_is_causal_and_sees_everything_earlier(channels, timing):
    # Two gated layers with kernel 3 cannot reach (0, 4) from (3, 0) on a 4x5 grid; only the
    # attention after the last layer can, through the raw input in its keys. So a complete
    # dependency map here means the attention path has no blind spot, and no leak means it
    # (and the query's channel-group-0 rule for 2 channels) is causal.
    prior = Prior(prior_config(timing=timing), code_channels=channels, code_values=5, num_classes=3)
    assert attention_positions(2, 1) == [1]
    dep = dependencies(prior, 4, 5)
    exp = allowed(channels, 4, 5)
    assert not (dep & ~exp).any(), f"leaks: {(dep & ~exp).nonzero()[:5].tolist()}"
    assert not (~dep & exp).any(), f"blind spots: {(~dep & exp).nonzero()[:5].tolist()}"


def test_convolutions_alone_would_leave_a_blind_spot():
    # The control for the test above: without attention the same stack misses far pixels.
    prior = Prior(prior_config(attention_layers=0), code_channels=1, code_values=5, num_classes=3)
    dep = dependencies(prior, 4, 5)
    assert not dep[0, 3, 0, 0, 0, 4]


def test_prior_probabilities_sum_to_one_over_every_code_map():
    # All 2x2 single-channel code maps with 3 values: 3**4 = 81, one batch per class.
    prior = (
        Prior(prior_config(attention_layers=2, dropout=0.3), 1, 3, num_classes=2).double().eval()
    )
    z = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 1, 2, 2)
    for label in range(2):
        with torch.no_grad():
            total = torch.exp(-prior.nll(z, torch.full((len(z),), label))).sum()
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_first_position_has_nothing_to_attend_to_and_stays_finite():
    torch.manual_seed(0)
    attn = CausalSelfAttention(hidden=6, embed_width=4, query_width=6, heads=4, timing="add")
    h = torch.randn(2, 6, 3, 3, requires_grad=True)
    emb = torch.randn(2, 4, 3, 3, requires_grad=True)
    y = attn(h, emb)
    assert torch.isfinite(y).all()
    # Position 0 attends only to the null slot (zero value): its output is the output bias.
    torch.testing.assert_close(y[:, :, 0, 0], attn.out.bias.expand(2, 6))
    y.square().sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(emb.grad).all()


def test_heads_need_not_divide_hidden():
    # Table 4: h = 640 with 15 heads -> per-head width ceil(640 / 15) = 43.
    attn = CausalSelfAttention(
        hidden=640, embed_width=8, query_width=640, heads=15, timing="concat"
    )
    assert attn.head_dim == 43 and attn.query.out_features == 15 * 43
    assert attn(torch.randn(1, 640, 2, 2), torch.randn(1, 8, 2, 2)).shape == (1, 640, 2, 2)


def test_timing_signal_distinguishes_positions():
    sig = timing_signal(8, 3, 4)  # (8, 3, 4)
    assert sig.shape == (8, 3, 4)
    flat = sig.flatten(1).t()  # (12 positions, 8)
    assert torch.cdist(flat, flat).add(torch.eye(12)).min() > 0  # all positions differ
    torch.testing.assert_close(
        sig[0, 1, 0], torch.sin(torch.tensor(1.0))
    )  # row 1, lowest frequency 1


def test_prior_shapes_dropout_and_class_errors():
    prior = Prior(prior_config(dropout=0.5), 1, 6, num_classes=4)
    z = torch.randint(0, 6, (3, 1, 3, 3))
    labels = torch.tensor([0, 1, 3])
    assert prior(z, labels).shape == (3, 1, 6, 3, 3)
    prior.eval()
    torch.testing.assert_close(prior.nll(z, labels), prior.nll(z, labels))  # no dropout in eval
    assert not torch.allclose(prior(z, labels), prior(z, torch.tensor([2, 2, 2])))
    with pytest.raises(ModelsError, match=r"\[0, 3\]"):
        prior.nll(z, torch.tensor([0, 1, 4]))


def test_table4_prior_builds_at_real_size():
    card = load_card("imagenet128_ff")
    with torch.device(
        "meta"
    ):  # shapes only: allocating and initialising 0.3 G weights takes seconds
        prior = Prior(
            card.prior, card.top_codes.channels, card.top_codes.num_codes, card.model.num_classes
        )
    n_params = sum(p.numel() for p in prior.parameters())
    assert attention_positions(20, 6) == [2, 5, 9, 12, 15, 19]
    assert 250e6 < n_params < 450e6, n_params  # a large PixelSNAIL-style prior, as in Table 4
