"""Figure 10-style panels: sampled reconstructions from every level of one or more runs.

For each run and each trained level l (1 = from the pixels' first codes, L = from the top
codes) it runs ``hvqeval reconstruct --from-level l`` in this process, exactly as a user
would, into ``<work>/<run name>/level<l>/``, then shows each level's ``grid.png`` (one row per
image: the original, then K sampled reconstructions) as one panel::

    run A, from level 1 | run A, from level 2 | run B, from level 1 ...

Reconstructions from higher levels keep less of the image (the paper's Figures 3, 7 and 10).
Rerunning draws the reconstructions again (same seed: the same images); the reconstruct
command refuses a folder made with other settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hvqeval.errors import HvqevalError


class FigureError(HvqevalError):
    """A figure cannot be made from these runs."""


def level_reconstructions(
    runs: list[str],
    images: str,
    work: str | os.PathLike,
    *,
    limit: int = 4,
    samples_per_image: int = 3,
    seed: int = 0,
    extra_args: tuple[str, ...] = (),
    run_cli: Callable[[list[str]], Any] | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Reconstruct ``images`` from every level of every run: one panel record per (run, level).

    A record: ``{"run", "model", "level", "folder", "grid"}`` (``grid`` is the PNG's path).
    """
    from hvqeval.run_folder import check_run
    from hvqeval.sweep import run_cli_in_process

    run_cli = run_cli or (lambda args: run_cli_in_process(args, echo))
    work = Path(work)
    names = [Path(r).resolve().name for r in runs]
    if len(set(names)) != len(names):
        raise FigureError("two --run folders have the same name; their panels would share a folder")
    panels = []
    for run, name in zip(runs, names):
        card = check_run(run, need_prior=False)
        if not card.level:
            raise FigureError(
                f"run {run} ('{card.name}') is a single-level PixelCNN: it has no levels to "
                "reconstruct from"
            )
        for level in range(1, len(card.level) + 1):
            folder = work / name / f"level{level}"
            run_cli(
                [
                    "reconstruct",
                    "--run",
                    str(run),
                    "--images",
                    images,
                    "--limit",
                    str(limit),
                    "--samples-per-image",
                    str(samples_per_image),
                    "--from-level",
                    str(level),
                    "--seed",
                    str(seed),
                    "--out",
                    str(folder),
                    *extra_args,
                ]
            )
            manifest = json.loads((folder / "reconstructions.json").read_text(encoding="utf-8"))
            panels.append(
                {
                    "run": str(run),
                    "model": card.name,
                    "level": level,
                    "folder": str(folder),
                    "grid": str(folder / manifest["grid"]),
                }
            )
    return panels


def reconstruction_figure(panels: list[dict[str, Any]]):
    """One image panel per record of :func:`level_reconstructions`, titled by run and level."""
    from matplotlib.figure import Figure

    grids = [np.asarray(Image.open(p["grid"]).convert("RGB")) for p in panels]
    width = sum(g.shape[1] for g in grids)
    height = max(g.shape[0] for g in grids)
    scale = 6.0 / max(height, 1)  # inches per pixel: panels keep their pixel aspect
    fig = Figure(figsize=(max(width * scale, 3.0), height * scale + 0.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[g.shape[1] for g in grids])[0]
    for ax, panel, grid in zip(axes, panels, grids):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"{panel['model']}\nfrom level {panel['level']}", fontsize="small")
        ax.set_axis_off()
    fig.suptitle("Sampled reconstructions (first column: original)", fontsize="medium")
    return fig
