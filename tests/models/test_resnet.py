"""Residual building blocks (paper Appendix A): structure, shapes, resampling."""

import pytest
import torch

from models.nn.resnet import Downsample, ResidualBlock, ResNet, Upsample


def test_block_is_identity_plus_relu_conv3_relu_conv1():
    torch.manual_seed(0)
    block = ResidualBlock(hidden=6, bottleneck=3)
    x = torch.randn(2, 6, 5, 5)
    # Written out by hand in the order of Appendix A: ReLU, 3x3 conv, ReLU, 1x1 conv, + x.
    inner = torch.nn.functional.conv2d(
        torch.relu(x), block.conv3.weight, block.conv3.bias, padding=1
    )
    expected = x + torch.nn.functional.conv2d(
        torch.relu(inner), block.conv1.weight, block.conv1.bias
    )
    torch.testing.assert_close(block(x), expected)
    assert block.conv3.kernel_size == (3, 3) and block.conv3.out_channels == 3
    assert block.conv1.kernel_size == (1, 1) and block.conv1.out_channels == 6


def test_block_with_zero_residual_weights_is_identity():
    block = ResidualBlock(hidden=4, bottleneck=2)
    torch.nn.init.zeros_(block.conv1.weight)
    torch.nn.init.zeros_(block.conv1.bias)
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(block(x), x)


def test_resnet_shapes_and_depth():
    net = ResNet(in_channels=3, hidden=8, bottleneck=4, layers=3, out_channels=5)
    assert len(net.blocks) == 3
    assert net(torch.randn(2, 3, 7, 9)).shape == (2, 5, 7, 9)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_downsample_and_upsample_factors(factor):
    down = Downsample(channels=4, factor=factor)
    up = Upsample(in_channels=4, out_channels=6, factor=factor)
    x = torch.randn(2, 4, 16, 16)
    y = down(x)
    assert y.shape == (2, 4, 16 // factor, 16 // factor)
    strided = [m for m in down.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(strided) == factor.bit_length() - 1 and all(m.stride == (2, 2) for m in strided)
    assert up(y).shape == (2, 6, 16, 16)


def test_upsample_is_pixel_shuffle_of_a_conv():
    up = Upsample(in_channels=2, out_channels=1, factor=2)
    x = torch.randn(1, 2, 3, 3)
    z = up.conv(x)  # (1, 4, 3, 3): the 4 sub-pixels of each output 2x2 block
    y = up(x)  # (1, 1, 6, 6)
    # PixelShuffle: output (2i + a, 2j + b) comes from conv channel 2a + b at (i, j).
    for a in range(2):
        for b in range(2):
            torch.testing.assert_close(y[0, 0, a::2, b::2], z[0, 2 * a + b])


@pytest.mark.parametrize("factor", [0, 3, 6])
def test_non_power_of_two_factor_is_rejected(factor):
    with pytest.raises(ValueError, match="power of two"):
        Downsample(4, factor)
    with pytest.raises(ValueError, match="power of two"):
        Upsample(4, 4, factor)
