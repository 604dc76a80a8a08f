"""Code predictability (paper Section 7.1, Figure 5): how well a small prior models a level's codes.

The paper compares auxiliary decoders by training "modestly sized PixelCNN models with 20 layers
and 128 units per layer" on the codes each encoder produces and reporting their validation NLL
at the end of training: codes that keep less local detail are easier to predict. Here::

    codes of level N (run folder, codes/levelN/{train,val})  (B, C, h, w), 2**bits values
      -> gated PixelCNN (models.prior.Prior, no attention; class-conditional on request)
      -> Adam for ``steps`` steps on random training batches (seeded), each step
         ``models.optimisation_step`` as in training, without the Polyak average
      -> validation NLL in bits per code sub-dimension, mean +- standard error over maps

Training state is kept in ``<run>/predictability/level<N>-<settings hash>.pt``: a stopped run
continues where it was, and a finished one is only evaluated again.

The codes are those the run's training already extracted (``hvqeval train`` writes them before
the stage above); when they are missing or older than the level's checkpoint, they are
extracted with the same function training uses.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hvqeval.errors import HvqevalError


class PredictabilityError(HvqevalError):
    """The level has no checkpoint or no codes to model."""


@dataclass(frozen=True)
class PredictabilityConfig:
    """The small prior and its training (defaults: the paper's 20 layers x 128 units)."""

    layers: int = 20
    hidden: int = 128
    kernel_size: int = 5
    steps: int = 5000
    batch_size: int = 32
    learning_rate: float = 3e-4
    class_conditional: bool = False
    seed: int = 0


@dataclass(frozen=True)
class PredictabilityResult:
    run: str
    model: str
    level: int
    aux_decoder: str  # e.g. "feedforward, 2 layers" or "msp 5x5, 2 layers"
    code_shape: tuple[int, int, int]
    code_values: int
    n_train: int
    n_val: int
    val_bpd: float  # bits per code sub-dimension
    val_stderr: float
    train_bpd: float  # mean over the last 10% of steps
    config: PredictabilityConfig = field(default_factory=PredictabilityConfig)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["code_shape"] = list(self.code_shape)
        return data


def describe_aux_decoder(card, level: int) -> str:
    aux = card.level[level - 1].aux_decoder
    if aux.kind == "msp":
        return f"msp {aux.mask_size}x{aux.mask_size}, {aux.layers} layers"
    return f"feedforward, {aux.layers} layers"


def level_codes(
    run_dir: str | os.PathLike,
    level: int,
    *,
    data: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
):
    """Train and validation ``CodesDataset`` of level ``level``, extracting them if needed."""
    from models import (
        CodesDataset,
        DataError,
        checkpoint_path,
        codes_dir,
        load_checkpoint,
        read_meta,
        read_run_config,
    )

    card = read_run_config(run_dir)
    if not 1 <= level <= len(card.level):
        if not card.level:
            raise PredictabilityError(
                f"card '{card.name}' is a single-level PixelCNN on pixels: it has "
                "no codes to model; use a run of a hierarchy"
            )
        raise PredictabilityError(
            f"card '{card.name}' has level(s) 1..{len(card.level)}; got --level {level}"
        )
    path = checkpoint_path(run_dir, f"level{level}")
    if not path.is_file():
        raise PredictabilityError(
            f"run {run_dir} has no trained level {level} ({path.name} missing); train it: "
            f"hvqeval train --config {card.name} --out {run_dir} --level {level}"
        )
    directory = codes_dir(run_dir, level)
    meta = read_meta(directory)
    if meta is None or meta["source_step"] != load_checkpoint(path, card, f"level{level}")["step"]:
        from models import Launch, TrainOptions, ensure_codes

        dev = torch.device(device)
        ensure_codes(
            card,
            Path(run_dir),
            level,
            data,
            Launch(0, 1, dev),
            TrainOptions(device=str(dev), num_workers=0, progress=progress),
        )
        meta = read_meta(directory)
    if "val" not in meta["splits"]:
        raise PredictabilityError(
            f"{directory} has no validation codes (the data had no 'val' split); "
            "train on data with a validation split"
        )
    try:
        return card, CodesDataset(directory, "train"), CodesDataset(directory, "val")
    except DataError as err:
        raise PredictabilityError(str(err)) from None


def _stack(dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    return torch.stack([z for z, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


def build_small_prior(config: PredictabilityConfig, channels: int, values: int, num_classes: int):
    from models import Prior, PriorConfig, TrainingConfig

    prior_config = PriorConfig(
        layers=config.layers,
        hidden=config.hidden,
        residual_hidden=config.hidden,
        timing="add",
        attention_layers=0,
        attention_heads=1,
        dropout=0.0,
        kernel_size=config.kernel_size,
        training=TrainingConfig(
            iterations=config.steps,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
        ),
    )
    return Prior(prior_config, channels, values, num_classes if config.class_conditional else 1)


def train_and_validate(
    train,
    val,
    channels: int,
    values: int,
    num_classes: int,
    config: PredictabilityConfig,
    device: torch.device | str = "cpu",
    progress: bool = True,
    limit: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    save_every: int = 500,
    on_step=None,
) -> tuple[float, float, float, int, int]:
    """Fit the small prior on ``train`` codes; -> (val bits/dim, its standard error, train bits/dim, n_train, n_val).

    With ``checkpoint`` the training state (weights, Adam, step, batch generator, losses) is
    saved every ``save_every`` steps, on Ctrl-C and at the end, and a later call with the same
    file continues from it: the result equals that of an uninterrupted run. ``on_step(step)``
    is called after every optimiser step.
    """
    from tqdm import tqdm

    n_train = len(train) if limit is None else min(limit, len(train))
    n_val = len(val) if limit is None else min(limit, len(val))
    if n_train == 0 or n_val < 2:
        raise PredictabilityError(
            f"need training codes and at least 2 validation maps, found {n_train} / {n_val}"
        )
    from models import PriorModel, optimisation_step

    torch.manual_seed(config.seed)
    prior = build_small_prior(config, channels, values, num_classes).to(device)
    model = PriorModel(
        prior=prior
    )  # the training interface of every stage: (codes, classes) -> loss
    optimizer = torch.optim.Adam(prior.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    recent: list[float] = []
    step = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        prior.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, recent = int(state["step"]), list(state["recent"])

    def save() -> None:
        if path is None:
            return
        from models import atomic_write_bytes

        state = {
            "model": prior.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "generator": generator.get_state(),
            "recent": recent,
            "config": asdict(config),
        }
        atomic_write_bytes(path, lambda f: torch.save(state, f))

    prior.train()
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc="code prior",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        while step < config.steps:
            index = torch.randint(0, n_train, (config.batch_size,), generator=generator)
            z, y = _stack(train, index)
            y = y if config.class_conditional else torch.zeros_like(y)
            # models.train's step: Adam on the mean NLL in nats per code sub-dimension (no Polyak).
            out = optimisation_step(
                model,
                model,
                None,
                optimizer,
                z.to(device),
                y.to(device),
                step,
                torch.device(device),
                precision="float32",
            )
            step += 1
            recent.append(float(out.loss.detach()) / math.log(2))
            bar.update(1)
            bar.set_postfix(bpd=f"{recent[-1]:.3f}")
            if step % save_every == 0:
                save()
            if on_step is not None:
                on_step(step)
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    tail = recent[-max(1, len(recent) // 10) :]
    prior.eval()
    per_map = []
    with torch.no_grad():
        for start in range(0, n_val, 256):
            z, y = _stack(val, range(start, min(start + 256, n_val)))
            y = y if config.class_conditional else torch.zeros_like(y)
            dims = z.shape[1] * z.shape[2] * z.shape[3]
            per_map.append(
                (
                    prior.nll(z.to(device), y.to(device)).double().cpu() / (dims * math.log(2))
                ).numpy()
            )
    values_bpd = np.concatenate(per_map)
    stderr = float(values_bpd.std(ddof=1) / math.sqrt(len(values_bpd)))
    return float(values_bpd.mean()), stderr, float(np.mean(tail)), n_train, n_val


def code_predictability(
    run_dir: str | os.PathLike,
    level: int,
    config: PredictabilityConfig = PredictabilityConfig(),
    *,
    data: str | None = None,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    model: str | None = None,
    progress: bool = True,
) -> PredictabilityResult:
    """Figure 5 for one run and level (see the module docstring)."""
    card, train, val = level_codes(run_dir, level, data=data, device=device, progress=progress)
    codes = card.level[level - 1].codes
    key = json.dumps(
        {"config": asdict(config), "limit": limit, "codes": train.meta}, sort_keys=True
    )
    checkpoint = (
        Path(run_dir)
        / "predictability"
        / f"level{level}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    )
    val_bpd, stderr, train_bpd, n_train, n_val = train_and_validate(
        train,
        val,
        codes.channels,
        codes.num_codes,
        card.model.num_classes,
        config,
        device,
        progress,
        limit,
        checkpoint=checkpoint,
    )
    return PredictabilityResult(
        os.fspath(run_dir),
        model or card.name,
        level,
        describe_aux_decoder(card, level),
        (codes.channels, codes.resolution, codes.resolution),
        codes.num_codes,
        n_train,
        n_val,
        val_bpd,
        stderr,
        train_bpd,
        config,
    )


def result_row(result: PredictabilityResult) -> dict:
    """Results-store row ``code_nll_bpd`` (std = standard error over validation code maps)."""
    from hvqeval.results import ROW_FIELDS, library_versions, utc_now

    row = {k: None for k in ROW_FIELDS}
    row.update(
        metric="code_nll_bpd",
        value=result.val_bpd,
        std=result.val_stderr,
        model=result.model,
        reference=f"{result.run}/codes/level{result.level}:val",
        n=result.n_val,
        seed=result.config.seed,
        tf32=False,
        versions=library_versions(),
        created_at=utc_now(),
        extra={
            "run": result.run,
            "level": result.level,
            "aux_decoder": result.aux_decoder,
            "unit": "bits per code sub-dim",
            "std_is": "standard error",
            "n_train": result.n_train,
            "train_bpd": result.train_bpd,
            "code_shape": list(result.code_shape),
            "code_values": result.code_values,
            "prior": asdict(result.config),
        },
    )
    return row


def plot(results: list[PredictabilityResult], path: str | os.PathLike) -> Path:
    """Figure 5-style chart: validation NLL (bits/dim) per run, with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.model}\n{r.aux_decoder}" for r in results]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(results)), 3.2))
    ax.errorbar(
        range(len(results)),
        [r.val_bpd for r in results],
        yerr=[r.val_stderr for r in results],
        fmt="o",
        capsize=3,
    )
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("validation NLL (bits/dim)")
    ax.set_title("Code predictability (lower = easier to predict)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
