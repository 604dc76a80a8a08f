"""The joint negative log-likelihood bound of a hierarchy, in bits/dim (paper Section 6, Appendix F).

For an image x = x_1 with deterministic codes x_2 .. x_L (``Hierarchy.encode``)::

    -log p(x, x_2, .., x_L) = -log P(x_L | class) - sum_{l=2}^{L-1} log D_l(x_l | x_{l+1}) - log D_1(x | x_2)
                              \\__ term "prior" __/   \\___ terms "level2" .. "level{L-1}" ___/  \\_ "level1" _/

``p(x, x_2, .., x_L) <= p(x)`` (the decoders also give mass to other codes), so this is a lower
bound on the marginal likelihood, i.e. an *upper* bound on the NLL of the pixels. Every term is
converted to bits and divided by the number of pixel sub-dimensions H x W x 3 -- the same
denominator for all terms, so the per-term numbers add up to the total::

    bpd_term(image) = nats_term(image) / (H * W * 3 * ln 2)

For a single-level card (no autoencoder, ``ModelCard.is_single_level``: the Appendix D
PixelCNN baseline) the only term is the PixelCNN on the pixels and the number is the exact
NLL of the pixels, not a bound: ``NllResult.exact`` and the rows' ``extra.nll_kind`` say which.

Means are over images; the standard error is the sample standard deviation (ddof = 1) of the
per-image values divided by sqrt(n).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hvqeval.errors import HvqevalError
from hvqeval.sharding import Shard, batch_indices

TOTAL = "total"


class LikelihoodError(HvqevalError):
    """The run or the data cannot give a joint NLL (missing stage, wrong image size, no images)."""


def nats_to_bits_per_dim(nats: torch.Tensor | np.ndarray | float, dims: int):
    """Nats per image -> bits per pixel sub-dimension (``dims`` = H * W * 3)."""
    return nats / (dims * math.log(2))


@dataclass(frozen=True)
class TermStat:
    """Mean and standard error over images of one term, in bits per pixel sub-dimension."""

    name: str
    bpd: float
    stderr: float
    bits_per_own_dim: float  # the same term per sub-dimension of what it models (codes or pixels)


@dataclass(frozen=True)
class NllResult:
    terms: tuple[TermStat, ...]  # order: level1 .. levelN, prior
    total: TermStat
    n: int
    dims: int  # H * W * 3
    exact: bool = False  # single-level model: the exact NLL of the pixels, not the joint bound
    per_image: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"exact"`` (single-level model) or ``"bound"`` (joint NLL over pixels and codes)."""
        return "exact" if self.exact else "bound"

    def term(self, name: str) -> TermStat:
        return next(t for t in self.terms if t.name == name)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "dims": self.dims,
            "unit": "bits/dim",
            "nll_kind": self.kind,
            "total": {"bpd": self.total.bpd, "stderr": self.total.stderr},
            "terms": {
                t.name: {
                    "bpd": t.bpd,
                    "stderr": t.stderr,
                    "bits_per_own_dim": t.bits_per_own_dim,
                    "share": t.bpd / self.total.bpd if self.total.bpd else float("nan"),
                }
                for t in self.terms
            },
        }


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), stderr


def term_dims(card) -> dict[str, int]:
    """Sub-dimensions each term models: pixels for level1, code maps above, the top codes for the prior."""
    dims = {}
    for i in range(len(card.level)):
        channels, _, res = card.level_input(i)
        dims[f"level{i + 1}"] = channels * res * res
    top = card.top_codes
    dims["prior"] = top.channels * top.resolution * top.resolution
    return dims


def summarise(per_image_nats: dict[str, np.ndarray], card) -> NllResult:
    """Per-image nats of every term -> bits/dim statistics (see the module docstring)."""
    channels, _, size = card.level_input(0)
    dims = channels * size * size
    own = term_dims(card)
    bpd = {
        name: nats_to_bits_per_dim(np.asarray(v, dtype=np.float64), dims)
        for name, v in per_image_nats.items()
    }
    total = sum(bpd.values())
    stats = []
    for name, values in bpd.items():
        mean, se = mean_and_stderr(values)
        stats.append(TermStat(name, mean, se, mean * dims / own[name]))
    mean, se = mean_and_stderr(total)
    per_image = {**bpd, TOTAL: total}
    return NllResult(
        tuple(stats),
        TermStat(TOTAL, mean, se, mean),
        len(total),
        dims,
        exact=not card.level,
        per_image=per_image,
    )


@torch.no_grad()
def per_image_nats(
    hierarchy,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    progress=None,
) -> dict[str, np.ndarray]:
    """Stream ``(uint8 images (B, 3, H, W), class ids (B,))`` batches through ``Hierarchy.nll_terms``:
    ``{term: (N,) float64 nats}`` in input order (empty arrays when there are no batches).

    ``progress``: an optional tqdm bar, advanced by the batch size.
    """
    if hierarchy.prior is None:
        raise LikelihoodError(
            "the joint NLL needs every stage including the prior; train it with "
            f"'hvqeval train --config {hierarchy.card.name} --prior'"
        )
    size = hierarchy.card.model.image_size
    collected: dict[str, list[np.ndarray]] = {}
    for x, y in batches:
        if tuple(x.shape[1:]) != (3, size, size):
            raise LikelihoodError(
                f"images of shape {tuple(x.shape[1:])} reach a model for (3, {size}, {size})"
            )
        terms = hierarchy.nll_terms(x.to(device), y.to(device))  # {name: (B,) nats}
        for name, nats in terms.items():
            collected.setdefault(name, []).append(nats.double().cpu().numpy())
        if progress is not None:
            progress.update(len(x))
    return {k: np.concatenate(v) for k, v in collected.items()}


def joint_nll(
    hierarchy,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    progress=None,
) -> NllResult:
    """``per_image_nats`` summarised in bits/dim (see the module docstring)."""
    nats = per_image_nats(hierarchy, batches, device, progress)
    if not nats:
        raise LikelihoodError("no images to evaluate; check --data, --split and --limit")
    return summarise(nats, hierarchy.card)


def merge_shards(parts: list[tuple[list[int], dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """Per-image nats of every process (item indices, ``{term: (n_rank,)}``) -> one array per term
    in item order, as one process would have computed it."""
    order = np.concatenate([np.asarray(indices, dtype=np.int64) for indices, _ in parts])
    names = next((list(nats) for _, nats in parts if nats), [])
    merged = {}
    for name in names:
        values = np.concatenate([nats[name] for indices, nats in parts if len(indices)])
        merged[name] = values[np.argsort(order, kind="stable")]
    return merged


def result_rows(
    result: NllResult,
    *,
    model: str,
    reference: str,
    reference_id: str | None,
    resize: str,
    extra: dict,
) -> list[dict]:
    """Results-store rows: ``nll_bpd`` (total) and ``nll_bpd_<term>``, ``std`` = standard error."""
    from hvqeval.results import ROW_FIELDS, library_versions, utc_now

    versions, now = library_versions(), utc_now()
    rows = []
    for stat in (result.total, *result.terms):
        metric = "nll_bpd" if stat.name == TOTAL else f"nll_bpd_{stat.name}"
        row = {k: None for k in ROW_FIELDS}
        row.update(
            metric=metric,
            value=stat.bpd,
            std=stat.stderr,
            model=model,
            reference=reference,
            reference_id=reference_id,
            n=result.n,
            resize=resize,
            tf32=bool(torch.backends.cuda.matmul.allow_tf32),
            versions=versions,
            created_at=now,
            extra={
                **extra,
                "unit": "bits/dim",
                "dims": result.dims,
                "std_is": "standard error",
                "nll_kind": result.kind,
                "bits_per_own_dim": stat.bits_per_own_dim,
            },
        )
        rows.append(row)
    return rows


@dataclass(frozen=True)
class RunEvaluation:
    result: NllResult
    model: str
    reference: str
    rows: list = field(default_factory=list)


class SampleSetImages(torch.utils.data.Dataset):
    """A sample set's images with the class ids of its manifest, as (uint8 (3, H, W), class)."""

    def __init__(self, sample_set):
        self.sample_set = sample_set
        self.image_size = sample_set.image_size
        self.class_names = [str(c) for c in sample_set.class_ids()]  # the classes it holds

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.sample_set)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.sample_set.uint8(index)).permute(2, 0, 1).contiguous()
        return image, self.sample_set.files[index].class_id


def open_sample_set(card, path) -> SampleSetImages:
    """A sample set scored with its own class ids (``open_dataset`` would read its folder as
    unlabelled images of class 0): refused when its size or a class is not the model's."""
    from hvqeval.sample_set import SampleSet

    sample_set = SampleSet.load(path)
    size, classes = card.model.image_size, card.model.num_classes
    if sample_set.image_size != size:
        raise LikelihoodError(
            f"{path} holds {sample_set.image_size}x{sample_set.image_size} samples but card "
            f"'{card.name}' models {size}x{size} images; score samples of the run's own size"
        )
    outside = [c for c in sample_set.class_ids() if not 0 <= c < classes]
    if outside:
        raise LikelihoodError(
            f"{path} holds samples of class(es) {outside[:5]} but the model knows classes "
            f"0-{classes - 1}"
        )
    return SampleSetImages(sample_set)


def evaluate_run(
    run_dir,
    *,
    data: str | None = None,
    split: str = "val",
    limit: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | None = None,
    model: str | None = None,
    results=None,
    progress: bool = True,
    shard: Shard | None = None,
) -> RunEvaluation:
    """``hvqeval nll``: load a run, stream ``data``'s ``split`` through it, optionally store the rows.

    Under ``torchrun`` (``shard``) each process takes the batches ``hvqeval.sharding`` gives it;
    the per-image values are gathered in item order, so every process holds the single-process
    result, and rank 0 stores the rows.
    """
    import hashlib
    import json
    import os

    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from hvqeval.run_folder import check_run, checkpoint_records
    from hvqeval.sample_set import MANIFEST_NAME
    from models import FirstItems, default_data, load_run, open_images, resolve_device

    card = check_run(run_dir, need_prior=True)
    dev = resolve_device(device)
    data = default_data(card, data)
    if (Path(data) / MANIFEST_NAME).is_file():  # a model's samples: their class ids, no split
        dataset, split = open_sample_set(card, data), None
    else:
        dataset = open_images(card, data, split, train=False)  # eval preprocessing, sizes checked
    reference = f"{data}:{split}" if split is not None else str(data)
    if limit is not None:
        dataset = FirstItems(dataset, limit)
    if len(dataset) == 0:
        raise LikelihoodError(f"{reference} holds no images")
    if card.model.num_classes < dataset.num_classes:
        raise LikelihoodError(
            f"{data} has {dataset.num_classes} classes but the model knows "
            f"{card.model.num_classes}; use the data the run was trained on"
        )
    hierarchy = load_run(run_dir, dev, require_prior=True)
    shard = shard or Shard()
    mine = batch_indices(len(dataset), batch_size, shard)  # the single-process batches of this rank
    loader = DataLoader(
        Subset(dataset, mine), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    with tqdm(
        total=len(mine),
        desc="joint NLL",
        unit="img",
        disable=not (progress and shard.is_main),
        dynamic_ncols=True,
    ) as bar:
        nats = per_image_nats(hierarchy, loader if mine else [], dev, bar)
    result = summarise(merge_shards(shard.gather((mine, nats))), card)
    label = model or card.name
    rows: list = []
    if results is not None and shard.is_main:
        from hvqeval.results import ResultsStore

        reference_id = hashlib.sha256(
            json.dumps(
                {"data": os.fspath(data), "split": split, "n": result.n, "limit": limit}
            ).encode()
        ).hexdigest()
        rows = result_rows(
            result,
            model=label,
            reference=reference,
            reference_id=reference_id,
            resize=f"eval_transform({card.model.image_size})",
            extra={
                "run": os.fspath(run_dir),
                "card": card.name,
                "checkpoints": checkpoint_records(run_dir),
                "split": split,
                "limit": limit,
            },
        )
        ResultsStore(results).append(rows)
    return RunEvaluation(result, label, reference, rows)
