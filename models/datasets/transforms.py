"""Preprocessing of the paper, Section 7 ("Experiments and results").

Training (128x128 and 256x256 ImageNet): rescale the shortest side to the target size, take
a random square crop (which preserves the aspect ratio), flip at random, and jitter
brightness, saturation and contrast. Evaluation, and real images shown in human studies:
the same rescale and a centre crop. Both take a PIL image (any mode) or a uint8 tensor
(3, H, W) and return a ``torch.uint8`` tensor (3, size, size).

The jitter strengths are not given in the paper (it cites the Inception-style photometric
distortions); the defaults below are mild multiplicative factors drawn from [1-j, 1+j].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from models.datasets.base import to_uint8_chw

DEFAULT_JITTER = 0.1  # not in paper


def rescale_shortest_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, H', W') with min(H', W') == size and the aspect ratio kept."""
    h, w = image.shape[-2:]
    if min(h, w) == size:
        return image
    # Antialiased bilinear resampling, rounding the long side to the nearest pixel.
    if h <= w:
        new_h, new_w = size, max(size, round(w * size / h))
    else:
        new_h, new_w = max(size, round(h * size / w)), size
    # Resampled in float and rounded back: the same antialiased filter as the uint8 kernel,
    # without that kernel's failures on tiny images (e.g. 2x2 -> 1x1).
    resized = F.resize(image.float(), [new_h, new_w], antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class EvalTransform:
    """Rescale the shortest side to ``size``, then crop the central ``size`` x ``size`` square."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        x = rescale_shortest_side(to_uint8_chw(image), self.size)  # (3, H', W')
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[:, top : top + self.size, left : left + self.size].contiguous()  # (3, S, S)


@dataclass(frozen=True)
class TrainTransform:
    """Rescale shortest side, random square crop, random horizontal flip, colour jitter.

    Randomness comes from ``generator`` if given (reproducible), else from torch's global
    generator (which DataLoader seeds differently in every worker).
    """

    size: int
    brightness: float = DEFAULT_JITTER
    contrast: float = DEFAULT_JITTER
    saturation: float = DEFAULT_JITTER
    flip: bool = True
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} jitter must be in [0, 1), got {getattr(self, name)}")

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _randint(self, high: int) -> int:  # uniform in [0, high]
        return int(torch.randint(0, high + 1, (), generator=self.generator).item())

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        x = rescale_shortest_side(to_uint8_chw(image), self.size)  # (3, H', W')
        h, w = x.shape[-2:]
        top, left = self._randint(h - self.size), self._randint(w - self.size)
        x = x[:, top : top + self.size, left : left + self.size]  # (3, S, S)
        if self.flip and self._randint(1):
            x = x.flip(-1)
        # The three photometric changes in a random order, as in common ImageNet pipelines.
        adjust = [
            (F.adjust_brightness, self.brightness),
            (F.adjust_contrast, self.contrast),
            (F.adjust_saturation, self.saturation),
        ]
        for k in torch.randperm(3, generator=self.generator).tolist():
            fn, strength = adjust[k]
            if strength > 0:
                x = fn(x, self._uniform(1 - strength, 1 + strength))
        return x.contiguous()


def eval_transform(size: int) -> EvalTransform:
    """Evaluation / study preprocessing (Section 7): rescale shortest side + centre crop."""
    return EvalTransform(size)


def train_transform(
    size: int,
    *,
    brightness: float = DEFAULT_JITTER,
    contrast: float = DEFAULT_JITTER,
    saturation: float = DEFAULT_JITTER,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> TrainTransform:
    """Training augmentation (Section 7): shortest side, random square crop, flip, jitter."""
    return TrainTransform(size, brightness, contrast, saturation, flip, generator)
