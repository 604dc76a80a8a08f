"""Sample sets from a trained hierarchy: ancestral sampling in batches (paper Algorithm 4).

``generate_sample_set`` draws ``per_class`` images for every chosen class and writes them as
a sample set (``hvqeval.sample_set``)::

    plan    class-major list of class ids: [c0]*N + [c1]*N + ...      (len = classes * N)
    image i generator seeded by (seed, i); its draws do not depend on the batch it is in
    batch b images [b*B, (b+1)*B) of the plan (B: --batch-size, or the largest that fits)
            x~_L ~ P(. | class)        at temperature T_prior        (top codes)
            x~_l ~ D_l(. | x~_{l+1})   at temperature T_level{l}     for l = L-1 .. 1
    writer  PNG i -> "{i:06d}.png" as soon as its batch is done; the manifest (run,
            checkpoint sha256 per stage, temperatures, seed, sampler, classes) lists the
            finished prefix and is rewritten atomically after every batch (under torchrun,
            after the first round of batches and then about every MEET_SECONDS)

Every image has its own generator (``models.draws.draw_uniforms`` takes one per row group),
so an image does not depend on the batch size, on which process draws its batch
(``hvqeval.sharding``: batch b goes to rank b % world) or on where a run was stopped: a run
killed after k batches and started again continues with batch k and produces exactly the
files of an uninterrupted run. (Different batch sizes group the same arithmetic differently;
on the machines tested the bytes were the same, but only the same batch size is promised to
give identical bytes.)

With ``save_codes`` the sampled codes of every level are kept in ``codes/images_NNNNNN.npz``
(one file per batch, named by its first image; arrays ``codes_level{l}`` = the sampled
x_{l+1}, ``class_ids``, ``files``) so images can be decoded again from any level
(``load_sampled_codes`` + ``Hierarchy.decode``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvqeval.batch_fit import largest_batch
from hvqeval.errors import GenerationError
from hvqeval.run_folder import check_run, checkpoint_records, run_class_names
from hvqeval.sample_set import MANIFEST_NAME, SampleSetWriter, image_name, write_image
from hvqeval.sharding import Shard
from models import SAMPLERS, Stage, Temperatures, atomic_write_bytes, load_run

CODES_FOLDER = "codes"
MEET_SECONDS = 5.0  # under torchrun: how often the ranks merge their finished images


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
    """A 63-bit seed for item ``batch_index`` (an image of a sample set, a reconstructed image)
    of a run seeded ``seed``: independent streams."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(batch_index)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The CPU generator of one item: images do not depend on the device's RNG."""
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
    generator: torch.Generator | list[torch.Generator],
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
    """Everything that decides the images of a sample set (``batch_size`` only sets the speed)."""

    run: str
    classes: tuple[int, ...]
    per_class: int
    temperatures: Temperatures = Temperatures()
    seed: int = 0
    batch_size: int | None = None  # None: the largest that fits the device (hvqeval.batch_fit)
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
    batch_size: int | None = None
    processes: int = 1
    seconds: float = (
        0.0  # drawing and writing in this call (model loading and batch fitting excluded)
    )


BatchHook = Callable[[int, int], None]  # (last batch index of a round, images in the set so far)

SEEDING = "per image: generator of (seed, image index)"


def _manifest_meta(request: SampleRequest, card, run_dir: str) -> dict[str, Any]:
    return {
        "card": card.name,
        "run": run_dir,
        "checkpoints": checkpoint_records(run_dir),
        "temperature": request.temperatures.record(Stage.all_of(card)),
        "seed": int(request.seed),
        "seeding": SEEDING,
        "sampler": request.options.sampler,
        "precision": request.options.precision,
        "classes": list(request.classes),
        "per_class": int(request.per_class),
        "num_images": len(request.classes) * request.per_class,
        "codes_saved": bool(request.save_codes),
    }


def _save_codes(
    folder: Path,
    start: int,
    codes: dict[int, torch.Tensor],
    class_ids: torch.Tensor,
    files: list[str],
) -> None:
    folder.mkdir(exist_ok=True)
    arrays = {f"codes_level{level}": c.cpu().numpy().astype(np.int32) for level, c in codes.items()}
    atomic_write_bytes(
        folder / f"images_{start:06d}.npz",
        lambda f: np.savez_compressed(
            f, class_ids=class_ids.cpu().numpy().astype(np.int64), files=np.array(files), **arrays
        ),
    )


def load_sampled_codes(sample_set: str | os.PathLike) -> dict[str, np.ndarray]:
    """All saved codes of a set in file order: ``codes_level{l}``, ``class_ids``, ``files``.

    A batch redrawn after an interruption (perhaps at another batch size) may overlap earlier
    parts; each image is taken once (its codes are the same in both)."""
    folder = Path(sample_set) / CODES_FOLDER
    parts = sorted(folder.glob("images_*.npz")) if folder.is_dir() else []
    if not parts:
        raise GenerationError(f"{sample_set} has no saved codes; sample it again with --save-codes")
    by_file: dict[str, dict[str, np.ndarray]] = {}
    for part in parts:
        with np.load(part) as archive:
            arrays = {key: archive[key] for key in archive.files}
        for i, name in enumerate(arrays["files"]):
            by_file.setdefault(str(name), {k: v[i] for k, v in arrays.items()})
    rows = [by_file[name] for name in sorted(by_file)]
    return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


def _open_writer(request: SampleRequest, out, card, run_dir: str) -> SampleSetWriter:
    """The set at ``out`` (new or to continue), checked against ``request``'s settings and plan."""
    target = Path(out)
    if (
        target.is_dir()
        and not (target / MANIFEST_NAME).is_file()
        and any(not p.name.startswith(".") for p in target.iterdir())
    ):
        raise GenerationError(
            f"{out} already holds files but no sample-set manifest; choose an empty or new --out"
        )
    writer = SampleSetWriter(
        out,
        model=request.model or card.name,
        image_size=card.model.image_size,
        **_manifest_meta(request, card, run_dir),
    )
    plan = request.plan()
    done = len(writer)
    if done > len(plan) or [f["class_id"] for f in writer.files] != plan[:done]:
        raise GenerationError(
            f"{out} holds files that do not follow this request's class plan; "
            "choose another --out folder or delete it"
        )
    return writer


def _draw_batch(hierarchy, request: SampleRequest, plan: list[int], start: int, stop: int):
    """Images ``[start, stop)`` of the plan: uint8 (B, H, W, 3), class ids (B,), codes by level."""
    class_ids = torch.tensor(plan[start:stop], dtype=torch.long)
    generators = [batch_generator(request.seed, i) for i in range(start, stop)]  # one per image
    pixels, codes = sample_batch(
        hierarchy, class_ids, request.temperatures, generators, request.options
    )
    images = pixels.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    return images, class_ids, codes


def generate_sample_set(
    request: SampleRequest,
    out: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
    on_batch: BatchHook | None = None,
    shard: Shard | None = None,
) -> SampleReport:
    """Write (or continue) the sample set ``out`` for ``request``; see the module docstring.

    ``shard``: this process's place under ``torchrun`` (``hvqeval.sharding``); batch ``b``
    is drawn by rank ``b % world``, rank 0 writes the manifest. ``max_batches`` stops after
    that many rounds (one batch per process) in this call (rerun to continue); ``on_batch``
    is called after each round is safely on disk.
    """
    from tqdm import tqdm

    shard = shard or Shard()
    if request.options.sampler not in SAMPLERS:
        raise GenerationError(
            f"unknown sampler {request.options.sampler!r}; choose {' or '.join(SAMPLERS)}"
        )
    if request.per_class < 1 or (request.batch_size is not None and request.batch_size < 1):
        raise GenerationError("--per-class and --batch-size must be at least 1")
    run_dir = os.fspath(request.run)
    card = check_run(run_dir, need_prior=True)
    parse_classes(
        ",".join(map(str, request.classes)), card.model.num_classes
    )  # refuses class ids the model lacks
    labels = run_class_names(run_dir, card)
    writer = _open_writer(
        request, out, card, run_dir
    )  # every rank checks (reads only), so all agree
    shard.barrier()  # nobody writes before every rank has read the set
    plan, size_px = request.plan(), card.model.image_size
    done = already = len(writer)
    batches_run, size, seconds = 0, request.batch_size, 0.0
    if done < len(plan):
        hierarchy = load_run(run_dir, device, require_prior=True)
        if size is None:  # the same on every rank: the smallest that fits, at most an even share
            fit = largest_batch(
                hierarchy, request.temperatures, request.options, torch.device(device)
            )
            size = shard.agree_min(max(1, min(fit, -(-len(plan) // shard.world))))
        writer.meta.update(batch_size=int(size), processes=shard.world)
        if shard.is_main:
            writer.flush()  # the manifest exists before the first PNG: a kill leaves a valid set
        codes_folder = Path(out) / CODES_FOLDER
        stop_batch = -(-len(plan) // size)
        began = time.perf_counter()
        # Under torchrun the ranks meet (gather the finished entries, rank 0 rewrites the
        # manifest) after the first round and then about every MEET_SECONDS, not after every
        # round: a meeting makes every rank wait for the slowest, so meeting per round would
        # add up each round's imbalance. A kill loses at most the rounds since the last meeting
        # (redrawn, to the same bytes, on the rerun). One process meets itself every round.
        every, since, pending = 1, 0, []
        with tqdm(
            total=len(plan),
            initial=done,
            desc=f"sampling {Path(out).name}",
            unit="img",
            disable=not (progress and shard.is_main),
            dynamic_ncols=True,
        ) as bar:
            for batches in shard.rounds(done // size, stop_batch):
                if max_batches is not None and batches_run >= max_batches:
                    break
                for b in (b for b in batches if shard.owns(b)):
                    start, stop = b * size, min((b + 1) * size, len(plan))
                    images, class_ids, codes = _draw_batch(hierarchy, request, plan, start, stop)
                    for i in range(
                        max(start, done), stop
                    ):  # a batch redone after a kill skips finished images
                        cid = plan[i]
                        pending.append(
                            write_image(out, i, images[i - start], cid, labels[cid], size_px)
                        )
                    if request.save_codes:
                        _save_codes(
                            codes_folder,
                            start,
                            codes,
                            class_ids,
                            [image_name(i) for i in range(start, stop)],
                        )
                batches_run += 1
                since += 1
                last = batches[-1] == stop_batch - 1 or batches_run == max_batches
                if since < every and not last:
                    continue
                parts = shard.gather((pending, time.perf_counter() - began))
                if every == 1 and shard.distributed:  # the first meeting: rounds per meeting
                    round_s = max(seconds for _, seconds in parts) / batches_run
                    every = max(1, int(MEET_SECONDS / max(round_s, 1e-3)))
                merged = sorted(
                    (e for part, _ in parts for e in part),
                    key=lambda e: int(Path(e["file"]).stem),
                )  # image index order
                if shard.is_main:
                    writer.extend(merged)
                    writer.flush()
                done += len(merged)
                since, pending = 0, []
                bar.update(len(merged))
                if on_batch is not None:
                    on_batch(batches[-1], done)
        seconds = time.perf_counter() - began
    report_manifest = writer.manifest() if shard.is_main else {}
    return SampleReport(
        Path(out),
        len(plan),
        done - already,
        already,
        batches_run,
        done == len(plan),
        report_manifest,
        size,
        shard.world,
        seconds,
    )
