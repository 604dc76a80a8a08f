"""Training of one stage of a hierarchy (Algorithm 1 runs it stage by stage, bottom-up).

Stages are ``level1 .. levelN`` (encoder + quantiser + auxiliary decoder + AR decoder, trained
simultaneously, Section 4) and ``prior``. Level 1 reads images (``models.data``); every later
stage reads the codes the level below extracted (``models.codes``).

One loop serves every stage and every launch: ``python -m ...`` / ``hvqeval train`` on one
CPU or GPU, or ``torchrun --nproc_per_node=N`` for DistributedDataParallel (NCCL on GPUs, gloo
on CPUs). Per step: a batch of ``training.batch_size`` (split over processes) of random
``crop``-sized crops (Appendix A: 64x64 unless the input is smaller), Adam, Polyak averaging
(``models.ema``), bf16 autocast on GPUs. Resuming is exact on one process with
``num_workers=0``: the checkpoint holds the step, the RNG states and (through the step) the
position in the epoch's shuffled order, so stopping and rerunning continues the same run.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from models.checkpoint import (
    LOG_FILE,
    checkpoint_path,
    init_run_dir,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from models.config import ModelCard
from models.ema import Polyak
from models.errors import ConfigError, DataError
from models.hierarchy import build_stage_model
from models.launch import Launch, autocast_for, setup_launch
from models.stage import Stage
from models.stage_data import (
    ensure_codes,
    open_level_input,
    random_crops,
    stage_input_level,
    stage_training,
)
from models.train_options import TrainOptions


@dataclass(frozen=True)
class StageResult:
    stage: str
    step: int
    steps_trained: int
    checkpoint: Path
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_second(self) -> float:
        return self.steps_trained / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------------------
# The training loop


class JsonlLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def _batches(
    dataset: Dataset,
    sampler: DistributedSampler,
    per_rank: int,
    step: int,
    steps_per_epoch: int,
    options: TrainOptions,
    device: torch.device,
):
    """Batches from optimiser step ``step`` on, epoch after epoch, in a resumable order."""
    while True:
        epoch, offset = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        indices = list(sampler)[offset * per_rank : steps_per_epoch * per_rank]
        # The loader's own generator (not the global RNG) seeds workers: resuming stays aligned.
        loader = DataLoader(
            dataset,
            batch_size=per_rank,
            sampler=indices,
            drop_last=True,
            num_workers=options.num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(
                options.seed * 100003 + epoch * 1009 + sampler.rank
            ),
        )
        for batch in loader:
            yield batch
            step += 1


def optimisation_step(
    train_model: torch.nn.Module,
    model: torch.nn.Module,
    polyak: Polyak | None,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    step: int,
    device: torch.device,
    precision: str = "auto",
):
    """One Adam step on a batch, then the Polyak update; returns the stage's ``LevelOutput``.

    The one definition of a training step: every stage, and code predictability's small prior
    (no Polyak average: ``polyak=None``). ``train_model`` is ``model`` itself or its
    DistributedDataParallel wrapper.
    """
    with autocast_for(device, precision):
        out = train_model(x, y)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    if polyak is not None:
        polyak.update(model, step)
    return out


def train_stage(
    card: ModelCard,
    run_dir: str | Path,
    stage: str,
    data: str | None = None,
    options: TrainOptions = TrainOptions(),
    launch: Launch | None = None,
) -> StageResult:
    """Train (or resume) one stage of ``card`` in ``run_dir`` until ``options.steps`` / the card's iterations."""
    run_dir = Path(run_dir)
    if stage not in Stage.all_of(card):
        raise ConfigError(
            f"card '{card.name}' has stages {', '.join(Stage.all_of(card))}; got '{stage}'"
        )
    launch = launch or setup_launch(options.device)
    if launch.is_main:
        init_run_dir(run_dir, card)
    launch.barrier()
    index = stage_input_level(card, stage)
    if index > 0:
        ensure_codes(card, run_dir, index, data, launch, options)
    cfg = stage_training(card, stage)
    target = options.steps if options.steps is not None else cfg.iterations
    path = checkpoint_path(run_dir, stage)
    ckpt = load_checkpoint(path, card, stage) if path.is_file() else None
    start_step = ckpt["step"] if ckpt else 0
    if start_step >= target:
        return StageResult(stage, start_step, 0, path, 0.0)

    torch.manual_seed(options.seed)  # the same initial weights in every process
    model = build_stage_model(card, stage).to(launch.device)
    # Crops, MSP masks and augmentations differ between processes.
    torch.manual_seed(options.seed + 7919 * launch.rank)
    polyak = Polyak(model, cfg.polyak_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    if ckpt:
        model.load_state_dict(ckpt["state_dict"], strict=True)
        polyak.load_state_dict(ckpt["ema_state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
    train_model = model
    if launch.world_size > 1:
        # The codebook is kept identical across processes by the quantiser itself (all-reduced
        # statistics), so buffers need no per-step broadcast from rank 0.
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        train_model = DistributedDataParallel(
            model,
            device_ids=[launch.device.index] if launch.device.type == "cuda" else None,
            **no_buffer_sync,
        )

    dataset = open_level_input(card, index, run_dir, data, "train", train=True, limit=options.limit)
    if stage == "prior" and dataset.num_classes > card.model.num_classes:
        raise DataError(
            f"the data has {dataset.num_classes} classes but card '{card.name}' has "
            f"model.num_classes = {card.model.num_classes}; set it to {dataset.num_classes}"
        )
    if cfg.batch_size % launch.world_size:
        raise ConfigError(
            f"batch size {cfg.batch_size} must be divisible by the {launch.world_size} processes"
        )
    per_rank = cfg.batch_size // launch.world_size
    sampler = DistributedSampler(
        dataset,
        num_replicas=launch.world_size,
        rank=launch.rank,
        shuffle=True,
        seed=options.seed,
        drop_last=True,
    )
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise DataError(
            f"the training data has {len(dataset)} items, fewer than one batch of "
            f"{cfg.batch_size}; use more data or a smaller training.batch_size in the card"
        )
    crop = min(cfg.crop, card.level_input(index)[2])
    batches = _batches(
        dataset, sampler, per_rank, start_step, steps_per_epoch, options, launch.device
    )
    if ckpt:
        restore_rng_state(ckpt["rng_state"])

    log = JsonlLog(run_dir / LOG_FILE, launch.is_main)

    def save(step: int) -> None:
        if launch.is_main:
            save_checkpoint(
                path,
                model_class=type(model).__name__,
                card=card,
                stage=stage,
                state_dict=model.state_dict(),
                ema_state_dict=polyak.state_dict(),
                optimizer=optimizer.state_dict(),
                step=step,
            )

    step, started = start_step, time.perf_counter()
    last_save_time, sums, count, window_start = started, {}, 0, started
    last_metrics: dict[str, float] = {}
    model.train()
    bar = tqdm(
        total=target,
        initial=start_step,
        desc=stage,
        unit="step",
        dynamic_ncols=True,
        disable=not (options.progress and launch.is_main),
    )
    try:
        for x, y in batches:
            x = random_crops(
                x.to(launch.device, non_blocking=True), crop
            )  # pinned batch, cropped on device
            y = y.to(launch.device, non_blocking=True)
            out = optimisation_step(
                train_model, model, polyak, optimizer, x, y, step, launch.device, options.precision
            )
            step += 1
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["loss"] = sums.get("loss", 0.0) + float(out.loss.detach())
            count += 1
            bar.update(1)
            if step % options.log_every == 0 or step == target:
                now = time.perf_counter()
                last_metrics = {k: v / count for k, v in sums.items()}
                log.write(
                    {
                        "stage": stage,
                        "step": step,
                        "time": time.time(),
                        "images_per_s": count * cfg.batch_size / max(now - window_start, 1e-9),
                        **{k: round(v, 6) for k, v in last_metrics.items()},
                    }
                )
                bar.set_postfix(
                    loss=f"{last_metrics['loss']:.3f}",
                    bpd=f"{last_metrics['bpd']:.3f}",
                    **(
                        {"usage": f"{last_metrics['usage']:.2f}"} if "usage" in last_metrics else {}
                    ),
                )
                sums, count, window_start = {}, 0, now
            if step >= target:
                break
            if step % options.checkpoint_every == 0 or (
                time.perf_counter() - last_save_time > 60 * options.checkpoint_minutes
            ):
                save(step)
                last_save_time = time.perf_counter()
    except KeyboardInterrupt:
        if step > start_step:
            save(step)
        raise
    finally:
        bar.close()
    save(step)
    if launch.is_main and not math.isfinite(last_metrics.get("loss", 0.0)):
        raise DataError(
            f"training {stage} diverged (loss {last_metrics['loss']}); lower the learning rate"
        )
    return StageResult(
        stage, step, step - start_step, path, time.perf_counter() - started, last_metrics
    )


@torch.no_grad()
def evaluate_stage(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    max_batches: int | None = None,
    precision: str = "auto",
) -> dict[str, float]:
    """Mean metrics (``bpd`` = AR bits per sub-pixel, ...) of ``model`` in eval mode over ``dataset``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums: dict[str, float] = {}
    n = 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        with autocast_for(device, precision):
            out = model(x.to(device), y.to(device))
        for k, v in out.metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        n += len(x)
    return {k: v / n for k, v in sums.items()}
