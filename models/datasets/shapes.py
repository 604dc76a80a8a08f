"""``shapes``: a built-in, procedural, class-conditional RGB dataset (no download).

Why it exists: the paper's claim is about *large-scale coherence* (Sections 1 and 7) - a
model that only captures local texture cannot tell these classes apart. So every class is a
different global layout, drawn in two colours of a fixed twelve-colour palette on top of a
gentle random light gradient and pixel noise; positions, sizes and angles vary. The colours
come from the same distribution for every class, so the mean colour of an image says nothing
about its class, and the class lives only in where things are::

    0 ring        one big annulus              5 diagonal    two halves split along a diagonal
    1 two discs   two discs side by side       6 frame       the outline of a big square
    2 horizon     top / bottom halves          7 triangle    one big filled triangle
    3 cross       a plus sign across the image 8 stripes     three parallel bars
    4 blob grid   3 x 3 small discs            9 quadrants   2 x 2 chequer of quarters

Images are rendered from signed-distance functions in unit coordinates, so any image size
works and edges are antialiased at every size. Item ``i`` of split ``s`` is a pure function
of ``(seed, s, i, image_size)``: class ``i % 10`` (balanced in every prefix of 10 items),
parameters from ``numpy.random.default_rng([seed, split_code, i])``. Train, val and test use
different seed streams, so they never share an image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from models.datasets.base import ImageDataset, Transform

CLASS_NAMES = [
    "ring",
    "two discs",
    "horizon",
    "cross",
    "blob grid",
    "diagonal",
    "frame",
    "triangle",
    "stripes",
    "quadrants",
]
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 50_000, "val": 10_000, "test": 10_000}
DEFAULT_SIZE = 32
NOISE_STD = 0.01  # pixel noise, in units of full range (about 2.5 of 255 levels)
MIN_COLOUR_DISTANCE = 0.4  # foreground vs background, Euclidean in [0, 1]^3
LIGHT_MAX = 0.1  # strength of the light gradient (multiplicative, across the image)
# Twelve named colours (RGB in [0, 1]). A palette rather than uniform colours: what varies
# within a class is layout, colour pair and lighting, and a small model can learn the colours
# exactly, so a few minutes of CPU training already give recognisable samples.
PALETTE = np.array(
    [
        (0.85, 0.15, 0.15),
        (0.95, 0.55, 0.10),
        (0.95, 0.90, 0.20),
        (0.20, 0.70, 0.25),
        (0.10, 0.60, 0.60),
        (0.15, 0.30, 0.85),
        (0.55, 0.25, 0.75),
        (0.95, 0.55, 0.75),
        (0.50, 0.30, 0.15),
        (0.95, 0.95, 0.95),
        (0.50, 0.50, 0.50),
        (0.08, 0.08, 0.08),
    ]
)


def _box(px, py, cx, cy, half_w, half_h, angle):
    """Signed distance to a rotated rectangle centred at (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    u = (px - cx) * c + (py - cy) * s
    v = -(px - cx) * s + (py - cy) * c
    dx, dy = np.abs(u) - half_w, np.abs(v) - half_h
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _disc(px, py, cx, cy, r):
    return np.hypot(px - cx, py - cy) - r


def _half_plane(px, py, cx, cy, angle):
    """Negative on one side of the line through (cx, cy) with normal direction ``angle``."""
    return (px - cx) * math.cos(angle) + (py - cy) * math.sin(angle)


def _shape_sdf(
    class_id: int, px: np.ndarray, py: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Signed distance (unit coordinates, negative = foreground) of one random instance."""
    u = rng.uniform
    cx, cy = 0.5 + u(-0.08, 0.08), 0.5 + u(-0.08, 0.08)
    if class_id == 0:  # ring
        r, width = u(0.24, 0.34), u(0.06, 0.1)
        return np.abs(_disc(px, py, cx, cy, r)) - width / 2
    if class_id == 1:  # two discs side by side
        r, gap = u(0.13, 0.18), u(0.02, 0.08)
        dx = r + gap / 2
        return np.minimum(_disc(px, py, cx - dx, cy, r), _disc(px, py, cx + dx, cy, r))
    if class_id == 2:  # horizon: lower part is foreground
        return -_half_plane(px, py, cx, u(0.35, 0.65), math.pi / 2 + u(-0.15, 0.15))
    if class_id == 3:  # cross
        angle, arm, width = u(-0.2, 0.2), u(0.3, 0.42), u(0.06, 0.1)
        return np.minimum(
            _box(px, py, cx, cy, arm, width, angle), _box(px, py, cx, cy, width, arm, angle)
        )
    if class_id == 4:  # 3 x 3 grid of small discs
        spacing, r = u(0.25, 0.3), u(0.07, 0.1)
        d = np.full(px.shape, np.inf)
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                jx, jy = u(-0.02, 0.02, size=2)
                d = np.minimum(d, _disc(px, py, cx + i * spacing + jx, cy + j * spacing + jy, r))
        return d
    if class_id == 5:  # diagonal split, either diagonal
        angle = (math.pi / 4 if rng.integers(2) else 3 * math.pi / 4) + u(-0.15, 0.15)
        return _half_plane(px, py, cx, cy, angle)
    if class_id == 6:  # square frame
        half, width, angle = u(0.26, 0.36), u(0.06, 0.1), u(-0.2, 0.2)
        return np.abs(_box(px, py, cx, cy, half, half, angle)) - width / 2
    if class_id == 7:  # big triangle: intersection of three half-planes, pointing up or down
        r, rot = u(0.32, 0.42), u(-0.25, 0.25) + (math.pi if rng.integers(2) else 0.0)
        d = np.full(px.shape, -np.inf)
        for k in range(3):
            normal = rot + math.pi / 2 + k * 2 * math.pi / 3  # outward normals 120 degrees apart
            d = np.maximum(
                d,
                _half_plane(
                    px, py, cx + 0.5 * r * math.cos(normal), cy + 0.5 * r * math.sin(normal), normal
                ),
            )
        return d
    if class_id == 8:  # three parallel bars, horizontal or vertical
        angle = (0.0 if rng.integers(2) else math.pi / 2) + u(-0.15, 0.15)
        spacing, width = u(0.24, 0.3), u(0.05, 0.08)
        c, s = math.cos(angle + math.pi / 2), math.sin(angle + math.pi / 2)
        return np.minimum.reduce(
            [
                _box(px, py, cx + k * spacing * c, cy + k * spacing * s, 0.6, width, angle)
                for k in (-1, 0, 1)
            ]
        )
    if class_id == 9:  # 2 x 2 chequer: foreground where the signs of the offsets agree
        ox, oy = px - cx, py - cy
        return -np.sign(ox * oy) * np.minimum(np.abs(ox), np.abs(oy))
    raise ValueError(f"shapes has classes 0..{len(CLASS_NAMES) - 1}, got {class_id}")


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background: two different palette colours at least MIN_COLOUR_DISTANCE apart."""
    while True:
        fg, bg = PALETTE[rng.choice(len(PALETTE), size=2, replace=False)]
        if np.linalg.norm(fg - bg) >= MIN_COLOUR_DISTANCE:
            return fg, bg


def render_shape(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random image of ``class_id`` as uint8 (3, size, size)."""
    centres = (np.arange(size) + 0.5) / size
    px, py = np.meshgrid(centres, centres, indexing="xy")  # (S, S) each; y grows downwards
    sdf = _shape_sdf(class_id, px, py, rng)
    coverage = np.clip(0.5 - sdf * size, 0.0, 1.0)  # antialiased over one pixel width
    fg, bg = _colour_pair(rng)
    image = bg[:, None, None] + (fg - bg)[:, None, None] * coverage[None]  # (3, S, S)
    light_angle, light = rng.uniform(0, 2 * math.pi), rng.uniform(0, LIGHT_MAX)
    image = image * (1 + light * _half_plane(px, py, 0.5, 0.5, light_angle))[None]
    image = image + rng.normal(0, NOISE_STD, size=image.shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


class ShapesDataset(ImageDataset):
    """The procedural dataset; ``len`` is configurable, items are rendered on access."""

    format = "shapes"

    def __init__(
        self,
        split: str = "train",
        *,
        image_size: int = DEFAULT_SIZE,
        length: int | None = None,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        from models.errors import DataError

        if split not in SPLITS:
            raise DataError(f"shapes has splits {', '.join(SPLITS)}; got split {split!r}")
        if image_size < 4:
            raise DataError(f"shapes needs an image size of at least 4 pixels, got {image_size}")
        if length is not None and length < 0:
            raise DataError(f"shapes length must be >= 0, got {length}")
        super().__init__(
            source="shapes",
            split=split,
            class_names=CLASS_NAMES,
            native_size=image_size,
            transform=transform,
        )
        self.seed = seed
        self.length = DEFAULT_LENGTHS[split] if length is None else length

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        class_id = index % len(CLASS_NAMES)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        return torch.from_numpy(render_shape(class_id, self.native_size, rng)), class_id
