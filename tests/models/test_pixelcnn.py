"""Gated PixelCNN local model and conditional decoder: causality, no blind spot, normalisation."""

import dataclasses
import itertools

import pytest
import torch

from models.config import LocalModelConfig, ResNetConfig, load_card
from models.errors import ModelsError
from models.pixelcnn import ConditionalDecoder, GatedPixelCNN


def tiny_level(layers=2, hidden=8, kernel_size=3):
    level = load_card("tiny_ff").level[0]
    return dataclasses.replace(
        level,
        local_model=LocalModelConfig(layers, hidden, kernel_size),
        modulator=ResNetConfig(layers=1, hidden=8, bottleneck=4),
    )


def dependency_map(net: GatedPixelCNN, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """dep[c, i, j, c', i', j'] = True iff logits of sub-pixel (c, i, j) have a non-zero
    gradient with respect to the embedding of sub-pixel (c', i', j')."""
    torch.manual_seed(seed)
    net = net.double()
    C, E = net.channels, net.embed_width
    # A batch of 8 independent inputs: a dependency counts if any of them shows it, so a ReLU
    # that happens to be inactive for one input cannot fake a blind spot.
    emb = torch.randn(8, C * E, height, width, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, net.bias_channels, height, width, dtype=torch.float64)
    logits = net.forward_embedded(emb, bias)  # (1, C, V, H, W)
    probe = torch.randn(
        net.values, dtype=torch.float64
    )  # random projection: no accidental cancelling
    dep = torch.zeros(C, height, width, C, height, width, dtype=torch.bool)
    for c, i, j in itertools.product(range(C), range(height), range(width)):
        (grad,) = torch.autograd.grad((logits[:, c, :, i, j] * probe).sum(), emb, retain_graph=True)
        per_channel = grad.view(8, C, E, height, width).abs().sum(dim=(0, 2))  # (C, H, W)
        dep[c, i, j] = per_channel > 0
    return dep


def expected_dependencies(C: int, height: int, width: int) -> torch.Tensor:
    """Sub-pixel (c, i, j) may and must see every earlier pixel and channels < c of its own."""
    exp = torch.zeros(C, height, width, C, height, width, dtype=torch.bool)
    for c, i, j in itertools.product(range(C), range(height), range(width)):
        for c2, i2, j2 in itertools.product(range(C), range(height), range(width)):
            earlier_pixel = (i2, j2) < (i, j)
            same_pixel_earlier_channel = (i2, j2) == (i, j) and c2 < c
            exp[c, i, j, c2, i2, j2] = earlier_pixel or same_pixel_earlier_channel
    return exp


@pytest.mark.parametrize("channels", [1, 3])
def test_local_model_is_causal_without_blind_spot(channels):
    # kernel 3 (p = 1): the horizontal stack reaches p columns further left per layer and the
    # vertical stack p rows up and p columns either side per layer, so 5 layers cover a 4x4 image
    # completely; any missing dependency is then a blind spot, any extra one a causality leak.
    net = GatedPixelCNN(channels=channels, values=4, hidden=9, layers=5, kernel_size=3)
    dep = dependency_map(net, 4, 4)
    exp = expected_dependencies(channels, 4, 4)
    leaks = (dep & ~exp).nonzero().tolist()
    blind = (~dep & exp).nonzero().tolist()
    assert not leaks, f"outputs depend on their own or later sub-pixels: {leaks[:5]}"
    assert not blind, f"blind spots: {blind[:5]}"


def test_within_pixel_channel_order_is_r_then_g_then_b():
    net = GatedPixelCNN(channels=3, values=4, hidden=6, layers=2, kernel_size=3)
    dep = dependency_map(net, 2, 2, seed=1)
    # At pixel (1, 1): R sees no sub-pixel of its own pixel, G sees R, B sees R and G.
    assert dep[0, 1, 1, :, 1, 1].tolist() == [False, False, False]
    assert dep[1, 1, 1, :, 1, 1].tolist() == [True, False, False]
    assert dep[2, 1, 1, :, 1, 1].tolist() == [True, True, False]


def test_decoder_shapes_and_nll():
    dec = ConditionalDecoder(
        tiny_level(), input_channels=3, input_values=16, code_channels=1, code_values=8, factor=4
    )
    x = torch.randint(0, 16, (2, 3, 8, 8))
    codes = torch.randint(0, 8, (2, 1, 2, 2))
    logits = dec(x, codes)
    assert logits.shape == (2, 3, 16, 8, 8)
    nll = dec.nll(x, codes)
    assert nll.shape == (2,)
    manual = (
        -torch.log_softmax(logits, dim=2).gather(2, x[:, :, None]).squeeze(2).sum(dim=(1, 2, 3))
    )
    torch.testing.assert_close(nll, manual)


def test_decoder_probabilities_sum_to_one_over_every_image():
    # Every 1x2 RGB image with 3 values per channel: 3**6 = 729 images, one batch.
    torch.manual_seed(0)
    dec = ConditionalDecoder(
        tiny_level(layers=2, hidden=6),
        input_channels=3,
        input_values=3,
        code_channels=1,
        code_values=4,
        factor=1,
    ).double()
    images = torch.tensor(list(itertools.product(range(3), repeat=6))).view(-1, 3, 1, 2)
    codes = torch.tensor([[[[1, 3]]]]).expand(len(images), 1, 1, 2)
    with torch.no_grad():
        total = torch.exp(-dec.nll(images, codes)).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_decoder_depends_on_codes():
    torch.manual_seed(0)
    dec = ConditionalDecoder(tiny_level(), 3, 16, 1, 8, factor=2)
    x = torch.randint(0, 16, (1, 3, 4, 4))
    a = dec(x, torch.zeros(1, 1, 2, 2, dtype=torch.long))
    b = dec(x, torch.full((1, 1, 2, 2), 5))
    assert not torch.allclose(a, b)


def test_bad_inputs_fail_clearly():
    dec = ConditionalDecoder(tiny_level(), 3, 16, 1, 8, factor=2)
    with pytest.raises(ModelsError, match=r"\[0, 15\]"):
        dec.nll(torch.full((1, 3, 4, 4), 16), torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ModelsError, match="upsample by 2"):
        dec(torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4, dtype=torch.long))
