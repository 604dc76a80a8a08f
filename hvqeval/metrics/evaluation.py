"""One evaluation: a sample set against a reference -> result rows (paper Section 6, Table 1).

``evaluate(samples, reference, settings)`` opens both inputs (``hvqeval.inputs``), resolves
the feature extractor and its weights (``hvqeval.metrics.features``), streams the sample
images through the network, takes the reference features and FID statistics from the
content-keyed cache (extracting them once on a miss), computes the requested metrics
(``hvqeval.metrics.fidelity``) and returns ``ResultRow`` objects carrying every setting that
changes a number. The caller appends them to the results store.

Resolution: when ``image_size`` is not given, the reference is brought to the samples'
resolution with the evaluation preprocessing (rescale shortest side, centre crop) if its
own size differs, and that is recorded in the row's ``resize`` field.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hvqeval.errors import HvqevalError
from hvqeval.inputs import ImageSource, SampleSetSource, open_images
from hvqeval.metrics import fidelity
from hvqeval.metrics.features import (
    Extractor,
    build_network,
    fp32_mode,
    images_to_features,
    pick_device,
    resolve_extractor,
)
from hvqeval.metrics.reference_cache import ReferenceCache, content_sha256, reference_key
from hvqeval.results import ResultRow, library_versions, utc_now

METRICS = ("isc", "fid", "kid", "prc")


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes the numbers (and a few things that only change speed)."""

    metrics: tuple[str, ...] = ("isc", "fid")
    extractor: str = "inception-v3-compat"
    weights: str | None = None
    per_class: bool = False
    # Defaults equal torch-fidelity's (see hvqeval.metrics.fidelity.DEFAULT_*).
    splits: int = fidelity.DEFAULT_ISC_SPLITS
    seed: int = fidelity.DEFAULT_SEED
    kid_subsets: int = fidelity.DEFAULT_KID_SUBSETS
    kid_subset_size: int = fidelity.DEFAULT_KID_SUBSET_SIZE
    prc_neighbourhood: int = fidelity.DEFAULT_PRC_NEIGHBOURHOOD
    image_size: int | None = None
    fid_infinity: bool = False
    bootstrap: int = 0
    tf32: bool = False
    # speed / housekeeping only
    batch_size: int = 64
    device: str = "auto"
    num_workers: int = 0
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = True
    model: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise HvqevalError(
                f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}"
            )
        # the CLI's options check these too; a batch spec's values come here only
        for name, minimum in (
            ("splits", 1),
            ("seed", 0),
            ("kid_subsets", 1),
            ("kid_subset_size", 2),  # an unbiased MMD needs 2 samples per subset (else NaN)
            ("prc_neighbourhood", 1),
            ("bootstrap", 0),
            ("batch_size", 1),
            ("num_workers", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise HvqevalError(
                    f"--{name.replace('_', '-')} must be a whole number >= {minimum}, got {value!r}"
                )
        if self.image_size is not None and (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or self.image_size < 1
        ):
            raise HvqevalError(f"--image-size must be a whole number >= 1, got {self.image_size!r}")

    def numeric(self) -> dict[str, Any]:
        """The settings that change a metric value (hashed into the job key)."""
        keys = (
            "metrics",
            "extractor",
            "per_class",
            "splits",
            "seed",
            "kid_subsets",
            "kid_subset_size",
            "prc_neighbourhood",
            "image_size",
            "fid_infinity",
            "bootstrap",
            "tf32",
        )
        data = asdict(self)
        return {k: (sorted(data[k]) if k == "metrics" else data[k]) for k in keys}


@dataclass
class EvalOutcome:
    rows: list[ResultRow]
    reference_cache: str  # "hit", "miss" or "off"
    warnings: list[str] = field(default_factory=list)
    job: str = ""


def open_pair(
    samples: str, reference: str, image_size: int | None
) -> tuple[ImageSource, ImageSource]:
    sample_source = open_images(samples, image_size=image_size)
    size = sample_source.require_uniform()
    reference_source = open_images(reference, image_size=image_size, default_split="val")
    if image_size is None and reference_source.image_size != size:
        reference_source = open_images(reference, image_size=size, default_split="val")
    return sample_source, reference_source


def job_key(
    sample_source: ImageSource,
    reference_source: ImageSource,
    extractor: Extractor,
    settings: EvalSettings,
) -> str:
    parts = {
        "samples": sample_source.content_key,
        "samples_pre": sample_source.preprocessing,
        "reference": reference_source.content_key,
        "reference_pre": reference_source.preprocessing,
        "extractor": extractor.label,
        "weights": extractor.weights_sha256,
        "settings": settings.numeric(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _reference_features(
    reference_source: ImageSource,
    extractor: Extractor,
    layer: str,
    network_factory,
    settings: EvalSettings,
    device: str,
    cache: ReferenceCache | None,
):
    """(features (N, D) memmap, class ids or None, FidStatistics, "hit"/"miss"/"off")."""
    key, parts = reference_key(
        content_key=content_sha256(reference_source),
        preprocessing=reference_source.preprocessing,
        extractor=extractor.label,
        fidelity_name=extractor.info.fidelity_name,
        layers=[layer],
        weights_sha256=extractor.weights_sha256,
        tf32=settings.tf32,
    )
    if cache is not None:
        found = cache.load(key, [layer])
        if found is not None:
            return found.features[layer], found.class_ids, found.statistics(layer), "hit", key
    root = cache if cache is not None else ReferenceCache(settings.cache_dir)
    tmp = root.new_entry()
    try:
        features = images_to_features(
            reference_source,
            network_factory(),
            [layer],
            tmp,
            batch_size=settings.batch_size,
            device=device,
            num_workers=settings.num_workers,
            desc="reference features",
            progress=settings.progress,
        )[layer]
        stats = fidelity.features_to_statistics(features, device=device)
        ids = reference_source.class_ids if settings.per_class else None
        if cache is None:
            return np.array(features), (None if ids is None else np.asarray(ids)), stats, "off", key
        ids = reference_source.class_ids
        meta = {
            **parts,
            "reference": reference_source.id,
            "n": len(reference_source),
            "created_at": utc_now(),
            "versions": library_versions(),
        }
        cache.commit(tmp, key, class_ids=ids, statistics={layer: stats}, meta=meta)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    found = cache.load(key, [layer])
    assert found is not None
    return found.features[layer], found.class_ids, found.statistics(layer), "miss", key


@dataclass(frozen=True)
class Prepared:
    """Opened inputs and resolved extractor of one evaluation, with its job key."""

    sample_source: ImageSource
    reference_source: ImageSource | None
    extractor: Extractor
    settings: EvalSettings
    key: str


def prepare(samples: str, reference: str | None, settings: EvalSettings) -> Prepared:
    """Open and check the inputs, resolve the extractor; cheap (no network is run)."""
    binary = [m for m in settings.metrics if m != "isc"]
    if (binary or settings.per_class) and reference is None:
        raise HvqevalError(f"{', '.join(binary) or 'per-class FID'} need(s) --reference")
    if settings.per_class and "fid" not in settings.metrics:
        raise HvqevalError("--per-class computes class-conditional FID: add fid to --metrics")
    if reference is not None:
        sample_source, reference_source = open_pair(samples, reference, settings.image_size)
    else:
        sample_source, reference_source = open_images(samples, image_size=settings.image_size), None
        sample_source.require_uniform()
    extractor = resolve_extractor(settings.extractor, settings.weights)
    if settings.per_class and (
        sample_source.class_ids is None or reference_source.class_ids is None
    ):
        raise HvqevalError(
            "--per-class needs class labels on both sides (a sample set and a class-folder "
            "dataset or labelled array)"
        )
    if "kid" in settings.metrics:
        smallest = min(len(sample_source), len(reference_source))
        if settings.kid_subset_size > smallest:
            raise HvqevalError(
                f"--kid-subset-size {settings.kid_subset_size} exceeds the {smallest} images "
                "available; lower it"
            )
    if "prc" in settings.metrics:
        smallest = min(len(sample_source), len(reference_source or sample_source))
        if settings.prc_neighbourhood >= smallest:
            raise HvqevalError(
                f"--prc-neighbourhood {settings.prc_neighbourhood} needs more than that many "
                f"images on each side, got {smallest}; lower it"
            )
    if "isc" in settings.metrics and len(sample_source) < settings.splits:
        raise HvqevalError(
            f"IS over {settings.splits} splits needs at least {settings.splits} images, "
            f"got {len(sample_source)}"
        )
    key = job_key(sample_source, reference_source or sample_source, extractor, settings)
    return Prepared(sample_source, reference_source, extractor, settings, key)


def evaluate(
    samples: str, reference: str | None, settings: EvalSettings, prepared: Prepared | None = None
) -> EvalOutcome:
    """Compute ``settings.metrics`` for ``samples`` against ``reference`` (IS alone needs none)."""
    prepared = prepared or prepare(samples, reference, settings)
    sample_source, reference_source, extractor, key = (
        prepared.sample_source,
        prepared.reference_source,
        prepared.extractor,
        prepared.key,
    )
    binary = [m for m in settings.metrics if m != "isc"]
    device = pick_device(settings.device)
    layers = sorted({extractor.layer("isc" if m == "isc" else "fid") for m in settings.metrics})
    fid_layer = extractor.layer("fid") if binary else None
    notes: list[str] = []

    cache = ReferenceCache(settings.cache_dir) if settings.use_cache else None
    scratch_root = cache if cache is not None else ReferenceCache(settings.cache_dir)
    network = None

    def network_factory():
        nonlocal network
        if network is None:
            network = build_network(extractor, layers, device)
        return network

    scratch = scratch_root.scratch()
    try:
        with fp32_mode(settings.tf32):
            sample_features = images_to_features(
                sample_source,
                network_factory(),
                layers,
                scratch,
                batch_size=settings.batch_size,
                device=device,
                num_workers=settings.num_workers,
                desc="sample features",
                progress=settings.progress,
            )
            cache_state, ref_features, ref_ids, ref_stats, ref_key = "off", None, None, None, None
            if (
                reference_source is not None and fid_layer is not None
            ):  # IS alone ignores a reference
                ref_features, ref_ids, ref_stats, cache_state, ref_key = _reference_features(
                    reference_source, extractor, fid_layer, network_factory, settings, device, cache
                )
        rows = _metric_rows(
            sample_source,
            reference_source,
            sample_features,
            ref_features,
            ref_ids,
            ref_stats,
            extractor,
            layers,
            fid_layer,
            settings,
            notes,
            device,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    common, common_extra = _common_fields(
        sample_source,
        reference_source,
        extractor,
        settings,
        device,
        key,
        cache_state,
        ref_key,
        notes,
    )
    out = [
        ResultRow(
            metric=metric,
            value=value,
            std=std,
            splits=splits,
            # a class's FID is over that class's images, not the whole sets'
            **{**common, **_class_counts(extra)},
            extra={**common_extra, **extra},
        )
        for metric, value, std, splits, extra in rows
    ]
    return EvalOutcome(out, cache_state, notes, key)


def _class_counts(extra: dict) -> dict:
    if "n_class" not in extra:
        return {}
    return {"n": extra["n_class"], "n_reference": extra["n_reference_class"]}


def _common_fields(
    sample_source,
    reference_source,
    extractor: Extractor,
    settings: EvalSettings,
    device: str,
    key: str,
    cache_state: str,
    ref_key: str | None,
    notes: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    sample_set = sample_source.sample_set if isinstance(sample_source, SampleSetSource) else None
    resize = f"samples={sample_source.preprocessing}"
    if reference_source is not None:
        resize += f"; reference={reference_source.preprocessing}"
    resize += f"; network={extractor.info.resize}"
    extra = {
        "job": key,
        "device": device,
        "official_weights": extractor.official,
        "reference_cache": cache_state,
        "reference_cache_key": ref_key,
        "batch_size": settings.batch_size,
        "converted_to_rgb": sample_source.converted_to_rgb
        + (reference_source.converted_to_rgb if reference_source is not None else 0),
    }
    if extractor.notes:
        extra["extractor"] = extractor.notes
    if notes:
        extra["warnings"] = list(notes)
    return {
        "model": settings.model or (sample_set.model if sample_set is not None else None),
        "sample_set": sample_source.id,
        "sample_set_sha256": sample_set.manifest_sha256
        if sample_set is not None
        else sample_source.content_key,
        "reference": reference_source.spec if reference_source is not None else None,
        "reference_id": (
            hashlib.sha256(
                f"{reference_source.content_key}|{reference_source.preprocessing}".encode()
            ).hexdigest()
            if reference_source is not None
            else None
        ),
        "n": len(sample_source),
        "n_reference": len(reference_source) if reference_source is not None else None,
        "seed": settings.seed,
        "feature_extractor": extractor.label,
        "weights_sha256": extractor.weights_sha256,
        "resize": resize,
        "tf32": settings.tf32,
        "versions": library_versions(),
    }, extra


def _warn_small_n(n: int, dim: int, what: str, notes: list[str], infinity: bool) -> None:
    if n < dim:
        message = (
            f"{what}: n = {n} is below the feature dimension {dim}, so the covariance is singular "
            "and FID is biased upwards; compare FIDs only at equal n"
            + ("" if infinity else " (or use --fid-infinity)")
        )
        notes.append(message)
        warnings.warn(message, stacklevel=3)


def _metric_rows(
    sample_source,
    reference_source,
    sample_features,
    ref_features,
    ref_ids,
    ref_stats,
    extractor: Extractor,
    layers,
    fid_layer,
    settings: EvalSettings,
    notes: list[str],
    device: str = "cpu",
):
    """(metric, value, std, splits, extra) tuples."""
    rows: list[tuple[str, float, float | None, int | None, dict[str, Any]]] = []
    metrics = settings.metrics
    if "isc" in metrics:
        isc_layer = extractor.layer("isc")
        mean, std = fidelity.logits_to_isc(
            sample_features[isc_layer], settings.splits, settings.seed
        )
        rows.append(("isc", mean, std, settings.splits, {"layer": isc_layer, "shuffled": True}))
    if fid_layer is None:
        return rows
    features = sample_features[fid_layer]
    dim = features.shape[1]
    if "fid" in metrics:
        _warn_small_n(len(features), dim, "FID", notes, settings.fid_infinity)
        if ref_stats.n < dim:
            _warn_small_n(ref_stats.n, dim, "FID reference", notes, settings.fid_infinity)
        stats = fidelity.features_to_statistics(features, device=device)
        extra: dict[str, Any] = {
            "layer": fid_layer,
            "feature_dim": dim,
            "fid_sqrt": fidelity.FID_SQRT,
            "differs_from_torch_fidelity": fidelity.differs_from_torch_fidelity(
                len(features), ref_stats.n, dim
            ),
        }
        if settings.bootstrap:
            extra["bootstrap"] = fidelity.bootstrap_fid(
                features, ref_stats, resamples=settings.bootstrap, seed=settings.seed
            )
        rows.append(
            (
                "fid",
                fidelity.statistics_to_fid(stats, ref_stats, features, device),
                None,
                None,
                extra,
            )
        )
        if settings.fid_infinity:
            value, points = fidelity.fid_infinity(features, ref_stats, seed=settings.seed)
            rows.append(("fid_infinity", value, None, None, {"layer": fid_layer, "points": points}))
    if "kid" in metrics:
        mean, std = fidelity.features_to_kid(
            features,
            ref_features,
            subsets=settings.kid_subsets,
            subset_size=settings.kid_subset_size,
            seed=settings.seed,
        )
        rows.append(
            (
                "kid",
                mean,
                std,
                None,
                {
                    "layer": fid_layer,
                    "subsets": settings.kid_subsets,
                    "subset_size": settings.kid_subset_size,
                },
            )
        )
    if "prc" in metrics:
        prc = fidelity.features_to_prc(
            features, ref_features, neighbourhood=settings.prc_neighbourhood
        )
        # torch-fidelity's calculate_metrics picks VGG-16 fc2_relu for PRC when no extractor is
        # named; hvqeval computes every metric with the one extractor chosen (--extractor vgg16
        # gives torch-fidelity's default PRC features).
        differs = (
            None
            if extractor.info.name == "vgg16"
            else f"features are {extractor.label} layer {fid_layer}; torch-fidelity's default PRC features "
            "are VGG-16 fc2_relu (use --extractor vgg16 for those)"
        )
        for name in ("precision", "recall"):
            rows.append(
                (
                    name,
                    prc[name],
                    None,
                    None,
                    {
                        "layer": fid_layer,
                        "neighbourhood": settings.prc_neighbourhood,
                        "f_score": prc["f_score"],
                        "differs_from_torch_fidelity": differs,
                    },
                )
            )
    if settings.per_class:
        rows.extend(
            _per_class_rows(sample_source, features, ref_features, ref_ids, fid_layer, notes)
        )
    return rows


def _per_class_rows(sample_source, features, ref_features, ref_ids, fid_layer, notes):
    """Class-conditional FID: samples of class c against reference images of class c."""
    sample_ids = np.asarray(sample_source.class_ids)
    ref_ids = np.asarray(ref_ids)
    rows, values = [], []
    for class_id in sorted(set(sample_ids.tolist())):
        mine, theirs = np.flatnonzero(sample_ids == class_id), np.flatnonzero(ref_ids == class_id)
        if len(mine) < 2 or len(theirs) < 2:
            notes.append(
                f"per-class FID: class {class_id} skipped ({len(mine)} samples, {len(theirs)} reference)"
            )
            continue
        ours, reference = np.asarray(features[mine]), np.asarray(ref_features[theirs])
        if len(reference) < len(ours):  # tr((S1 S2)^1/2) is symmetric: factor the smaller side
            ours, reference = reference, ours
        value = fidelity.statistics_to_fid(
            fidelity.features_to_statistics(ours), fidelity.features_to_statistics(reference), ours
        )
        values.append(value)
        rows.append(
            (
                "fid_class",
                value,
                None,
                None,
                {
                    "layer": fid_layer,
                    "class_id": int(class_id),
                    "class_name": sample_source.class_name(int(class_id)),
                    "n_class": int(len(mine)),
                    "n_reference_class": int(len(theirs)),
                },
            )
        )
    if not values:
        raise HvqevalError("--per-class: no class has at least 2 samples and 2 reference images")
    rows.append(
        (
            "fid_class_mean",
            float(np.mean(values)),
            None,
            None,
            {"layer": fid_layer, "classes": len(values), "std_over_classes": float(np.std(values))},
        )
    )
    return rows
