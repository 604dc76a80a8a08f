"""Sample sets from a trained hierarchy: ancestral sampling in batches (paper Algorithm 4).

``generate_sample_set`` draws ``per_class`` images for every chosen class and writes them as
a sample set (``hvqeval.sample_set``)::

    plan    class-major list of class ids: [c0]*N + [c1]*N + ...      (len = classes * N)
    batch b items [b*B, (b+1)*B) of the plan, generator seeded by (seed, b)
            x~_L ~ P(. | class)        at temperature T_prior        (top codes)
            x~_l ~ D_l(. | x~_{l+1})   at temperature T_level{l}     for l = L-1 .. 1
    writer  PNGs + manifest (run, checkpoint sha256 per stage, temperatures, seed, sampler,
            batch size, classes) rewritten after every batch

Every batch has its own generator, so a run that stops after k batches and is started again
continues with batch k and produces exactly the files of an uninterrupted run. The batch size
changes which random numbers each image gets, so it is part of the recorded settings.

With ``save_codes`` the sampled codes of every level are kept in ``codes/batch_NNNNN.npz``
(arrays ``codes_level{l}`` = the sampled x_{l+1}, ``class_ids``, ``files``) so images can be
decoded again from any level (``load_sampled_codes`` + ``Hierarchy.decode``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvqeval.errors import GenerationError
from hvqeval.run_folder import check_run, checkpoint_records, run_class_names
from hvqeval.sample_set import SampleSetWriter
from models import SAMPLERS, Stage, Temperatures, atomic_write_bytes, load_run

CODES_FOLDER = "codes"


# --------------------------------------------------------------------------------------
# Settings


def parse_temperatures(text: str, stages: list[str]) -> Temperatures:
    """``"0.98"`` or ``"prior=0.97,level1=1.0"`` (a bare number sets the default) -> Temperatures."""
    default, named = 1.0, {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        stage, sep, value = part.rpartition("=") if "=" in part else ("", "", part)
        stage = stage.strip()
        try:
            number = float(value)
        except ValueError:
            raise GenerationError(
                f"temperature {part!r} is not a number; use e.g. 0.98 or prior=0.97,level1=1.0"
            ) from None
        if not number > 0 or not np.isfinite(number):
            raise GenerationError(
                f"temperature must be a positive number, got {part!r} (1.0 = as trained)"
            )
        if not sep:
            default = number
        elif stage not in stages:
            raise GenerationError(
                f"temperature for unknown stage {stage!r}; this run has stages {', '.join(stages)}"
            )
        else:
            named[stage] = number
    return Temperatures(default, tuple(sorted(named.items())))


def parse_classes(text: str, num_classes: int) -> list[int]:
    """``"all"``, ``"0,1,2"`` or ranges ``"0-9,20"`` -> sorted-as-given unique class ids."""
    text = str(text).strip()
    if text == "all":
        return list(range(num_classes))
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:  # a range "a-b" (a leading "-" is a negative id, refused below)
                lo, hi = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                ids.extend(range(int(lo), int(hi) + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise GenerationError(
                f"--classes: {part!r} is not a class id; use e.g. 0,1,2 or 0-9 or all"
            ) from None
    if not ids:
        raise GenerationError("--classes is empty; use e.g. 0,1,2 or all")
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad:
        raise GenerationError(
            f"class {bad[0]} is out of range: this model has classes 0..{num_classes - 1}"
        )
    if len(set(ids)) != len(ids):
        raise GenerationError(
            f"--classes lists class {next(i for i in ids if ids.count(i) > 1)} twice"
        )
    return ids


def batch_seed(seed: int, batch_index: int) -> int:
    """A 63-bit seed for batch ``batch_index`` of a run seeded ``seed`` (independent streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(batch_index)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The CPU generator of one batch: images do not depend on the device's RNG."""
    return torch.Generator().manual_seed(batch_seed(seed, batch_index))


# --------------------------------------------------------------------------------------
# Ancestral sampling of one batch (Algorithm 4)


@dataclass(frozen=True)
class SamplerOptions:
    sampler: str = "cached"
    precision: str = "float32"  # "bfloat16" only makes sense on GPUs
    cuda_graph: bool = False

    def engine_options(self) -> dict[str, Any]:
        return {"precision": self.precision, "cuda_graph": self.cuda_graph}


def sample_batch(
    hierarchy,
    class_ids: torch.Tensor,
    temperatures: Temperatures,
    generator: torch.Generator,
    options: SamplerOptions = SamplerOptions(),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One batch of Algorithm 4 (``Hierarchy.sample``): class ids (B,) -> (pixels long (B, 3, H, W),
    {level l: codes x_{l+1}})."""
    codes: dict[int, torch.Tensor] = {}
    pixels = hierarchy.sample(
        class_ids, temperatures, generator, options.sampler, keep=codes, **options.engine_options()
    )
    return pixels, codes


# --------------------------------------------------------------------------------------
# Sample sets


@dataclass(frozen=True)
class SampleRequest:
    """Everything that decides the images of a sample set."""

    run: str
    classes: tuple[int, ...]
    per_class: int
    temperatures: Temperatures = Temperatures()
    seed: int = 0
    batch_size: int = 16
    options: SamplerOptions = SamplerOptions()
    save_codes: bool = False
    model: str | None = None  # label in the manifest and in results (default: the card name)

    def plan(self) -> list[int]:
        """Class id of every image, class-major."""
        return [c for c in self.classes for _ in range(self.per_class)]


@dataclass(frozen=True)
class SampleReport:
    path: Path
    total: int
    made_now: int
    already_there: int
    batches_run: int
    complete: bool
    manifest: dict[str, Any] = field(default_factory=dict)


BatchHook = Callable[[int, int], None]  # (batch index, images in the set so far)


def _manifest_meta(request: SampleRequest, card, run_dir: str) -> dict[str, Any]:
    return {
        "card": card.name,
        "run": run_dir,
        "checkpoints": checkpoint_records(run_dir),
        "temperature": request.temperatures.record(Stage.all_of(card)),
        "seed": int(request.seed),
        "sampler": request.options.sampler,
        "precision": request.options.precision,
        "batch_size": int(request.batch_size),
        "classes": list(request.classes),
        "per_class": int(request.per_class),
        "num_images": len(request.classes) * request.per_class,
        "codes_saved": bool(request.save_codes),
    }


def _save_codes(
    folder: Path,
    batch_index: int,
    codes: dict[int, torch.Tensor],
    class_ids: torch.Tensor,
    files: list[str],
) -> None:
    folder.mkdir(exist_ok=True)
    arrays = {f"codes_level{level}": c.cpu().numpy().astype(np.int32) for level, c in codes.items()}
    atomic_write_bytes(
        folder / f"batch_{batch_index:05d}.npz",
        lambda f: np.savez_compressed(
            f, class_ids=class_ids.cpu().numpy().astype(np.int64), files=np.array(files), **arrays
        ),
    )


def load_sampled_codes(sample_set: str | os.PathLike) -> dict[str, np.ndarray]:
    """All saved codes of a set, concatenated in file order: ``codes_level{l}``, ``class_ids``, ``files``."""
    folder = Path(sample_set) / CODES_FOLDER
    parts = sorted(folder.glob("batch_*.npz")) if folder.is_dir() else []
    if not parts:
        raise GenerationError(f"{sample_set} has no saved codes; sample it again with --save-codes")
    merged: dict[str, list[np.ndarray]] = {}
    for part in parts:
        with np.load(part) as archive:
            for key in archive.files:
                merged.setdefault(key, []).append(archive[key])
    return {k: np.concatenate(v) for k, v in merged.items()}


def generate_sample_set(
    request: SampleRequest,
    out: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
    on_batch: BatchHook | None = None,
) -> SampleReport:
    """Write (or continue) the sample set ``out`` for ``request``; see the module docstring.

    ``max_batches`` stops after that many batches in this call (rerun to continue);
    ``on_batch`` is called after each batch is safely on disk.
    """
    from tqdm import tqdm

    if request.options.sampler not in SAMPLERS:
        raise GenerationError(
            f"unknown sampler {request.options.sampler!r}; choose {' or '.join(SAMPLERS)}"
        )
    if request.per_class < 1 or request.batch_size < 1:
        raise GenerationError("--per-class and --batch-size must be at least 1")
    run_dir = os.fspath(request.run)
    card = check_run(run_dir, need_prior=True)
    parse_classes(
        ",".join(map(str, request.classes)), card.model.num_classes
    )  # refuses class ids the model lacks
    labels = run_class_names(run_dir, card)
    meta = _manifest_meta(request, card, run_dir)
    target = Path(out)
    if (
        target.is_dir()
        and not (target / "manifest.json").is_file()
        and any(not p.name.startswith(".") for p in target.iterdir())
    ):
        raise GenerationError(
            f"{out} already holds files but no sample-set manifest; choose an empty or new --out"
        )
    writer = SampleSetWriter(
        out, model=request.model or card.name, image_size=card.model.image_size, **meta
    )
    plan = request.plan()
    done = len(writer)
    if done > len(plan) or [f["class_id"] for f in writer.files] != plan[:done]:
        raise GenerationError(
            f"{out} holds files that do not follow this request's class plan; "
            "choose another --out folder or delete it"
        )
    already = done
    hierarchy = None
    codes_folder = Path(out) / CODES_FOLDER
    size = request.batch_size
    first_batch = done // size
    batches = range(first_batch, -(-len(plan) // size))
    batches_run = 0
    with tqdm(
        total=len(plan),
        initial=done,
        desc=f"sampling {Path(out).name}",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for b in batches:
            if max_batches is not None and batches_run >= max_batches:
                break
            if hierarchy is None:
                hierarchy = load_run(run_dir, device, require_prior=True)
            start, stop = b * size, min((b + 1) * size, len(plan))
            class_ids = torch.tensor(plan[start:stop], dtype=torch.long)
            pixels, codes = sample_batch(
                hierarchy,
                class_ids,
                request.temperatures,
                batch_generator(request.seed, b),
                request.options,
            )
            images = (
                pixels.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            )  # (B, H, W, 3)
            names = []
            for i in range(len(images)):  # a batch redone after a crash skips its finished images
                if start + i < len(writer):
                    names.append(writer.files[start + i]["file"])
                    continue
                cid = plan[start + i]
                names.append(writer.add(images[i], cid, labels[cid]).file)
            if request.save_codes:
                _save_codes(codes_folder, b, codes, class_ids, names)
            writer.flush()
            batches_run += 1
            bar.update(stop - max(start, done))
            done = stop
            if on_batch is not None:
                on_batch(b, len(writer))
    writer.flush()
    return SampleReport(
        Path(out),
        len(plan),
        len(writer) - already,
        already,
        batches_run,
        len(writer) == len(plan),
        writer.manifest(),
    )
