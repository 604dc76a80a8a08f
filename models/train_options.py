"""How a stage is trained (steps, device, precision, checkpoint cadence): ``TrainOptions``.

Kept apart from ``models.train`` so the code-extraction helpers (``models.stage_data``) that
the loop calls can take the same options without importing the loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainOptions:
    steps: int | None = None  # train until this step; default: the card's iterations
    device: str | None = None  # default: cuda if available, else cpu
    precision: str = "auto"  # "auto" (bfloat16 autocast on GPUs), "float32", "bfloat16"
    num_workers: int = 2
    checkpoint_every: int = 500  # steps
    checkpoint_minutes: float = 10.0
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    limit: int | None = None  # use only the first N items of every split (quick experiments)
    eval_batch_size: int = 64  # code extraction and evaluation
