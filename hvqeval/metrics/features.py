"""Feature extractors by name, their weights, and streaming feature extraction (Section 6, App. H).

All networks run through torch-fidelity's feature-extractor registry and
``create_feature_extractor``; hvqeval adds two extractors to that registry (``resnet50`` for
ResNet-50-avgpool, ``hvqeval-domain`` for the domain classifier). Names used on the command
line and recorded in results:

=======================  ==========================  ===============================  ==========
name                     torch-fidelity extractor     layers (IS / FID, KID, PRC)      weights
=======================  ==========================  ===============================  ==========
``inception-v3-compat``  inception-v3-compat          logits_unbiased / 2048           torch-fidelity's
``vgg16``                vgg16                        - / fc2_relu (= VGG-16 fc7)      torchvision
``resnet50``             resnet50 (hvqeval)           logits / avgpool                 torchvision
``domain``               hvqeval-domain (hvqeval)     logits / pool                    ``hvqeval features train``
=======================  ==========================  ===============================  ==========

Weights are always resolved to a file first (``--weights`` / ``--inception-weights`` /
``$HVQEVAL_INCEPTION_WEIGHTS``, else the torch hub cache, else a download when online) and
that file is handed to torch-fidelity as ``feature_extractor_weights_path``, so its SHA-256
can be recorded and no network is ever swapped in silently. Without weights and without a
network the error says which file to put where.

``images_to_features`` streams uint8 batches through a DataLoader into memory-mapped
``.npy`` files (one per layer), so memory stays bounded for any number of images.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hvqeval.errors import HvqevalError, WeightsError
from hvqeval.sample_set import sha256_file
from models import ModelsError, resolve_device

INCEPTION_ENV = "HVQEVAL_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
RESNET50_URL = (
    "https://download.pytorch.org/models/resnet50-0676ba61.pth"  # torchvision IMAGENET1K_V1
)


@dataclass(frozen=True)
class ExtractorInfo:
    """Static description of one named extractor."""

    name: str
    fidelity_name: str
    layers: dict[str, str]  # metric ("isc", "fid", "kid", "prc") -> layer name
    url: str | None
    resize: str  # what the network does to its input, recorded with results


EXTRACTORS: dict[str, ExtractorInfo] = {
    "inception-v3-compat": ExtractorInfo(
        "inception-v3-compat",
        "inception-v3-compat",
        {"isc": "logits_unbiased", "fid": "2048", "kid": "2048", "prc": "2048"},
        INCEPTION_URL,
        "tf1-bilinear(299)",
    ),
    "vgg16": ExtractorInfo(
        "vgg16",
        "vgg16",
        {"fid": "fc2_relu", "kid": "fc2_relu", "prc": "fc2_relu"},
        VGG16_URL,
        "tf1-bilinear(224)",
    ),
    "resnet50": ExtractorInfo(
        "resnet50",
        "resnet50",
        {"isc": "logits", "fid": "avgpool", "kid": "avgpool", "prc": "avgpool"},
        RESNET50_URL,
        "tf1-bilinear(224)",
    ),
    "domain": ExtractorInfo(
        "domain",
        "hvqeval-domain",
        {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"},
        None,
        "bilinear-antialias(trained size)",
    ),
}


def register_with_torch_fidelity() -> None:
    """Add hvqeval's extractors to torch-fidelity's registry (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    from hvqeval.metrics.domain import FIDELITY_NAME, FeatureExtractorDomain
    from hvqeval.metrics.resnet import FeatureExtractorResNet50

    if "resnet50" not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor("resnet50", FeatureExtractorResNet50)
    if FIDELITY_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(FIDELITY_NAME, FeatureExtractorDomain)


@dataclass(frozen=True)
class Extractor:
    """A resolved extractor: which network, which weights file (and its hash)."""

    info: ExtractorInfo
    weights_path: Path
    weights_sha256: str
    label: str  # recorded as results' feature_extractor
    official: bool  # the published weights (hash matches the download's)
    notes: dict = field(default_factory=dict)

    def layer(self, metric: str) -> str:
        if metric not in self.info.layers:
            raise HvqevalError(
                f"the {self.info.name} extractor has no layer for {metric}; use inception-v3-compat"
            )
        return self.info.layers[metric]


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _published_prefix(url: str) -> str:
    match = re.search(r"-([0-9a-f]{8})\.pth$", url)
    return match.group(1) if match else ""


def _download_or_fail(info: ExtractorInfo, flag: str) -> Path:
    target = _hub_file(info.url)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            info.url, str(target), hash_prefix=_published_prefix(info.url), progress=True
        )
    except Exception as err:  # noqa: BLE001 - any failure to fetch means "offline"
        hint = f" (or set {INCEPTION_ENV})" if info.name == "inception-v3-compat" else ""
        raise WeightsError(
            f"{info.name} weights are not available and cannot be downloaded ({type(err).__name__}); "
            f"put {target.name} in {target.parent}/ or pass {flag} PATH{hint}"
        ) from None
    return target


def resolve_extractor(
    name: str, weights: str | os.PathLike | None = None, expected_sha256: str | None = None
) -> Extractor:
    """Find the weights file for extractor ``name`` and check it; never falls back elsewhere."""
    if name not in EXTRACTORS:
        raise HvqevalError(
            f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}"
        )
    info = EXTRACTORS[name]
    flag = "--inception-weights" if name == "inception-v3-compat" else "--weights"
    if name == "inception-v3-compat" and os.environ.get(INCEPTION_ENV):
        weights = weights or os.environ[INCEPTION_ENV]
        if str(weights) == os.environ[INCEPTION_ENV]:  # the path came from the environment
            flag = f"${INCEPTION_ENV}"
    if weights is None and name == "domain":
        raise WeightsError(
            "the domain extractor needs its weights: train them with "
            "`hvqeval features train --data shapes --out weights/shapes_classifier.pt` and pass --weights"
        )
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist; check {flag}")
    else:
        path = _download_or_fail(info, flag)
    digest = sha256_file(path)
    if expected_sha256 and digest != expected_sha256.lower():
        raise WeightsError(
            f"{path} has sha256 {digest}, expected {expected_sha256}; wrong or corrupted file"
        )
    prefix = _published_prefix(info.url) if info.url else ""
    # A file named like the published one (name-<sha256 prefix>.pth) must carry that hash.
    own_prefix = re.search(r"-([0-9a-f]{8})\.pth$", path.name)
    if (
        own_prefix
        and info.url
        and path.name == info.url.rsplit("/", 1)[-1]
        and not digest.startswith(prefix)
    ):
        raise WeightsError(
            f"{path} is named like the published {info.name} weights but its sha256 is {digest}; "
            "the file is corrupted or not the published one: download it again"
        )
    label = name
    notes: dict = {}
    if name == "domain":
        from hvqeval.metrics.domain import load_weights

        loaded = load_weights(path)
        label = f"domain:{loaded.dataset}"
        notes = {
            "dataset": loaded.dataset,
            "image_size": loaded.image_size,
            "val_accuracy": loaded.meta.get("val_accuracy"),
        }
    return Extractor(info, path, digest, label, bool(prefix) and digest.startswith(prefix), notes)


def pick_device(device: str) -> str:
    """The metric commands' ``--device`` (auto, cpu, cuda, cuda:N) through models' one resolver."""
    try:
        return str(resolve_device(None if device == "auto" else device))
    except ModelsError as err:
        raise HvqevalError(f"--device: {err}") from None


@contextlib.contextmanager
def fp32_mode(tf32: bool) -> Iterator[None]:
    """Set TF32 for CUDA matmuls and cuDNN convolutions (off = strict fp32), restoring on exit."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build_network(extractor: Extractor, layers: list[str], device: str):
    """torch-fidelity's ``create_feature_extractor`` for our resolved weights file."""
    import pickle

    from torch_fidelity.utils import create_feature_extractor

    register_with_torch_fidelity()
    try:
        return create_feature_extractor(
            extractor.info.fidelity_name,
            list(layers),
            cuda=(device == "cuda"),
            feature_extractor_weights_path=str(extractor.weights_path),
            verbose=False,
        )
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as err:
        # load_state_dict lists every missing and unexpected key (tens of kB): the file is
        # another network's, or no state_dict at all
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise WeightsError(
            f"{extractor.weights_path} does not hold {extractor.info.name} weights ({first}); "
            "give the file of that network"
        ) from None


def _unwrap_worker_error(err: Exception) -> HvqevalError:
    """A DataLoader worker re-raises our errors with a traceback in the message; keep one line."""
    text = str(err).strip().splitlines()
    last = text[-1] if text else ""
    if ": " in last and last.split(": ", 1)[0].endswith("Error"):
        last = last.split(": ", 1)[1]
    return type(err)(last) if isinstance(err, HvqevalError) else HvqevalError(last)


def images_to_features(
    source,
    network,
    layers: list[str],
    out_dir: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    desc: str = "features",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Stream ``source`` (uint8 (3, H, W) items) through ``network``; write ``<layer>.npy`` memmaps.

    Batches are formed exactly as torch-fidelity forms them (DataLoader, same batch size,
    no shuffling), so features equal those of ``torch_fidelity.calculate_metrics``.
    Under ``torchrun`` each process runs the batches ``hvqeval.sharding`` gives it and the
    features are gathered in item order, so every process gets the single-process arrays.
    Returns read-only memmaps ``{layer: (N, D) float32}``.
    """
    from torch.utils.data import Subset

    from hvqeval.sharding import batch_indices, current

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(source)
    size = min(batch_size, n)
    shard = current()
    if not shard.distributed:
        arrays = _extract(
            source,
            network,
            layers,
            size,
            device,
            num_workers,
            desc,
            progress,
            lambda name, dim: np.lib.format.open_memmap(
                out_dir / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, dim)
            ),
            getattr(source, "id", source),
        )
        for array in arrays.values():
            array.flush()
        del arrays
    else:
        mine = batch_indices(n, size, shard)
        own = _extract(
            Subset(source, mine),
            network,
            layers,
            size,
            device,
            num_workers,
            desc,
            progress and shard.is_main,
            lambda name, dim: np.empty((len(mine), dim), np.float32),
            getattr(source, "id", source),
        )
        for name in layers:  # every rank runs every collective, in the same order
            parts = shard.gather((mine, own.get(name)))
            dim = next(a.shape[1] for _, a in parts if a is not None)
            full = np.lib.format.open_memmap(
                out_dir / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, dim)
            )
            for indices, array in parts:
                if indices:
                    full[np.asarray(indices)] = array
            full.flush()
            del full
    return {name: np.load(out_dir / f"{name}.npy", mmap_mode="r") for name in layers}


def _extract(
    source, network, layers, batch_size, device, num_workers, desc, progress, allocate, label
):
    """Features of ``source`` in order: ``{layer: allocate(layer, D)}`` filled batch by batch."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    n = len(source)
    arrays: dict[str, np.ndarray] = {}
    if n == 0:
        return arrays
    loader = DataLoader(
        source,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        pin_memory=(device == "cuda"),
        persistent_workers=False,
    )
    start = 0
    with (
        tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar,
        torch.no_grad(),
    ):
        iterator = iter(loader)
        while True:
            try:
                batch = next(iterator)  # (B, 3, H, W) uint8
            except StopIteration:
                break
            except HvqevalError as err:
                raise _unwrap_worker_error(err) from None
            except RuntimeError as err:
                if "stack expects each tensor to be equal size" in str(err):
                    raise HvqevalError(
                        f"{label} has images of different sizes; pass --image-size N"
                    ) from None
                raise
            if device == "cuda":
                batch = batch.cuda(non_blocking=True)
            outputs = network.convert_features_tuple_to_dict(network(batch))
            for name in layers:
                value = outputs[name].detach().to("cpu", torch.float32).numpy()  # (B, D)
                if name not in arrays:
                    arrays[name] = allocate(name, value.shape[1])
                arrays[name][start : start + len(value)] = value
            start += len(batch)
            bar.update(len(batch))
    return arrays
