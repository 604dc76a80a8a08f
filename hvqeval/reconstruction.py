"""Sampled reconstructions of real images (paper Figures 6, 7, 10, 14-16).

Codes of an image are deterministic (``Hierarchy.encode``), so all the variation between
reconstructions comes from the autoregressive decoders: the paper shows K draws per image to
reveal what the codes keep (large-scale structure) and what they leave to the decoder
(texture). For image i::

    x_i (3, H, W) --encode--> codes of level L (x_{L+1})  repeated K times
        --sample levels L .. 1 (generator seeded by (seed, i))--> K reconstructions

``write_reconstructions`` saves a grid (one row per image: the original first, then its K
reconstructions) plus every image as its own PNG and ``reconstructions.json`` describing them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hvqeval.errors import GenerationError
from hvqeval.run_folder import check_run, checkpoint_records
from hvqeval.sampling import SamplerOptions, batch_generator
from models import Stage, Temperatures, atomic_write_bytes, atomic_write_text

MANIFEST = "reconstructions.json"
GRID = "grid.png"
PAD = 2  # white pixels between grid cells
BATCH_ROWS = 64  # sampled rows (images x samples) decoded in one pass


@torch.no_grad()
def reconstruct(
    hierarchy,
    images: torch.Tensor,
    samples: int,
    *,
    from_level: int | None = None,
    temperatures: Temperatures = Temperatures(),
    seed: int = 0,
    options: SamplerOptions = SamplerOptions(),
    first_index: int = 0,
) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> uint8 reconstructions (N, K, 3, H, W).

    Image n uses the generator of ``(seed, first_index + n)``, so results do not depend on how
    images are grouped into calls.
    """
    levels = len(hierarchy.levels)
    level = levels if from_level is None else from_level
    if not 1 <= level <= levels:
        raise GenerationError(f"--from-level must be 1..{levels} for this run, got {level}")
    device = next(hierarchy.parameters()).device
    codes = hierarchy.encode(images.to(device))[level - 1]  # (N, C, h, w)
    codes = codes.repeat_interleave(samples, dim=0)  # (N*K, C, h, w): image n's K copies together
    # One generator per image, each driving its own K rows: the same draws as image by image.
    generators = [batch_generator(seed, first_index + n) for n in range(len(images))]
    pixels = hierarchy.decode(
        codes,
        temperatures,
        generators,
        options.sampler,
        from_level=level,
        **options.engine_options(),
    )
    out = (
        pixels.clamp(0, 255).to(torch.uint8).cpu().reshape(len(images), samples, *pixels.shape[1:])
    )
    return out  # (N, K, 3, H, W)


def grid(originals: torch.Tensor, reconstructions: torch.Tensor, pad: int = PAD) -> np.ndarray:
    """One row per image, original first: (N, 3, H, W) + (N, K, 3, H, W) -> uint8 (rows, cols, 3).

    Cell (r, c) starts at y = pad + r * (H + pad), x = pad + c * (W + pad); the gaps are white.
    """
    n, k = reconstructions.shape[:2]
    h, w = originals.shape[-2:]
    canvas = np.full((pad + n * (h + pad), pad + (k + 1) * (w + pad), 3), 255, dtype=np.uint8)
    for r in range(n):
        row = [originals[r]] + [reconstructions[r, c] for c in range(k)]
        for c, cell in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[y : y + h, x : x + w] = cell.permute(1, 2, 0).numpy()
    return canvas


@dataclass(frozen=True)
class ReconstructionReport:
    out: Path
    images: int
    samples_per_image: int
    from_level: int
    mean_abs_error: list[float]  # per image, over its K reconstructions, in pixel values


def _save_png(array_hwc: np.ndarray, path: Path) -> None:
    atomic_write_bytes(path, lambda f: Image.fromarray(array_hwc, mode="RGB").save(f, format="PNG"))


def write_reconstructions(
    run_dir: str | os.PathLike,
    images_spec: str,
    out: str | os.PathLike,
    samples: int,
    *,
    limit: int | None = 8,
    from_level: int | None = None,
    temperatures: Temperatures = Temperatures(),
    seed: int = 0,
    options: SamplerOptions = SamplerOptions(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ReconstructionReport:
    """``hvqeval reconstruct``: encode images of ``images_spec`` and write K reconstructions each."""
    from tqdm import tqdm

    from hvqeval.inputs import open_images
    from models import load_run

    if samples < 1:
        raise GenerationError("--samples-per-image must be at least 1")
    card = check_run(run_dir, need_prior=False)
    source = open_images(images_spec, image_size=card.model.image_size, default_split="val")
    count = len(source) if limit is None else min(limit, len(source))
    if not card.level:
        raise GenerationError(
            f"card '{card.name}' is a single-level PixelCNN on pixels: it has no codes to "
            "reconstruct from; use a run of a hierarchy"
        )
    level = len(card.level) if from_level is None else from_level
    if not 1 <= level <= len(card.level):
        raise GenerationError(
            f"--from-level must be 1..{len(card.level)} for card '{card.name}', got {level}"
        )
    out = Path(out)
    meta = {
        "format_version": 1,
        "model": card.name,
        "run": os.fspath(run_dir),
        "checkpoints": [c for c in checkpoint_records(run_dir) if c["stage"] != "prior"],
        "images": str(images_spec),
        "preprocessing": source.preprocessing,
        "count": count,
        "samples_per_image": samples,
        "from_level": level,
        "temperature": temperatures.record(Stage.all_of(card)[:level]),
        "seed": seed,
        "sampler": options.sampler,
        "image_size": card.model.image_size,
    }
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in meta if old.get(k) != meta[k])
        if changed:
            raise GenerationError(
                f"{out} holds reconstructions made with other settings ({', '.join(changed)}); "
                "choose another --out folder or delete it"
            )
    hierarchy = load_run(run_dir, device)
    (out / "images").mkdir(parents=True, exist_ok=True)
    originals, recons, files, errors = [], [], [], []
    chunk = max(1, BATCH_ROWS // samples)  # images decoded together: one sampling pass per chunk
    bar = tqdm(
        total=count, desc="reconstructing", unit="img", disable=not progress, dynamic_ncols=True
    )
    for start in range(0, count, chunk):
        xs = torch.stack(
            [source[i] for i in range(start, min(start + chunk, count))]
        )  # (n, 3, H, W) uint8
        rs = reconstruct(
            hierarchy,
            xs,
            samples,
            from_level=level,
            temperatures=temperatures,
            seed=seed,
            options=options,
            first_index=start,
        )  # (n, K, 3, H, W)
        for offset, (x, r) in enumerate(zip(xs, rs)):
            i = start + offset
            originals.append(x)
            recons.append(r)
            names = [f"images/{i:04d}_original.png"] + [
                f"images/{i:04d}_sample{k:02d}.png" for k in range(samples)
            ]
            for name, picture in zip(names, [x, *r]):
                _save_png(picture.permute(1, 2, 0).numpy(), out / name)
            error = float((r.float() - x.float()).abs().mean())
            errors.append(error)
            files.append(
                {
                    "index": i,
                    "source": source.describe(i),
                    "original": names[0],
                    "samples": names[1:],
                    "mean_abs_error": round(error, 4),
                }
            )
        bar.update(len(xs))
    bar.close()
    _save_png(grid(torch.stack(originals), torch.stack(recons)), out / GRID)
    text = json.dumps({**meta, "grid": GRID, "grid_padding": PAD, "files": files}, indent=1)
    atomic_write_text(manifest_path, text)
    return ReconstructionReport(out, count, samples, level, errors)
