"""Nearest neighbours of samples in the training data (paper Appendix H, Figures 11-13).

Three spaces, after Brock et al. (2019):

* ``pixel``             L2 between images at the samples' resolution (dataset images are
                        rescaled + centre-cropped to it); stored as uint8 rows (N, 3*H*W)
* ``vgg16-fc7``         torch-fidelity's ``vgg16`` extractor, layer ``fc2_relu`` (4096-d,
                        the activation after the second fully-connected layer's ReLU = fc7)
* ``resnet50-avgpool``  hvqeval's ``resnet50`` extractor registered with torch-fidelity
                        (torchvision ResNet-50, 2048-d global average pool)

Dataset features are computed once and stored memory-mapped under
``<cache>/neighbours/<key>/features.npy`` (key: the dataset's content key, preprocessing,
space and weights SHA-256), then reused.

``exact_knn`` is exact: distances ``|q|^2 - 2 q.x + |x|^2`` are computed in float32 over
database chunks (CPU or GPU) keeping the best ``k + margin`` candidates per query, and the
candidates are re-ranked by their directly computed float64 distance (ties by index), so
the result equals a brute-force float64 search unless float32 round-off pushes a true
neighbour behind ``margin`` others -- the margin (default k) makes that practically impossible.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hvqeval.errors import HvqevalError

SPACES = {
    "pixel": None,
    "vgg16-fc7": ("vgg16", "fc2_relu"),
    "resnet50-avgpool": ("resnet50", "avgpool"),
}
FORMAT_VERSION = 2  # 2: keyed by file bytes (1 was keyed by names, sizes and mtimes)


def pixel_features(
    source, out_path: Path, *, batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """Flattened uint8 pixels (N, 3*H*W) of a uniform-size source, written as a memmap."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    n, dim = len(source), int(np.prod(source[0].shape))
    rows = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(n, dim))
    start = 0
    loader = DataLoader(source, batch_size=batch_size, shuffle=False)
    with tqdm(total=n, desc="pixel features", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:  # (B, 3, H, W) uint8
            rows[start : start + len(batch)] = batch.reshape(len(batch), -1).numpy()
            start += len(batch)
            bar.update(len(batch))
    rows.flush()
    del rows
    return np.load(out_path, mmap_mode="r")


def network_features(
    source,
    extractor,
    layer: str,
    out_dir: Path,
    *,
    batch_size: int,
    device: str,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    from hvqeval.metrics.features import build_network, images_to_features

    network = build_network(extractor, [layer], device)
    features = images_to_features(
        source,
        network,
        [layer],
        out_dir,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        desc=f"{extractor.info.name} features",
        progress=progress,
    )
    return features[layer]


@dataclass(frozen=True)
class SpaceFeatures:
    features: np.ndarray  # (N, D) memmap
    cached: bool
    key: str


def dataset_features(
    source,
    space: str,
    extractor,
    cache_root: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> SpaceFeatures:
    """Features of the dataset in ``space``, from the cache or computed and stored there."""
    from hvqeval.metrics.reference_cache import content_sha256

    parts = {
        "format_version": FORMAT_VERSION,
        "content_key": content_sha256(source),
        "preprocessing": source.preprocessing,
        "space": space,
        "weights_sha256": extractor.weights_sha256 if extractor is not None else None,
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    entry = Path(cache_root) / "neighbours" / key
    if (entry / "meta.json").is_file():
        return SpaceFeatures(np.load(entry / "features.npy", mmap_mode="r"), True, key)
    tmp = Path(cache_root) / "tmp" / f"neighbours-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if space == "pixel":
            pixel_features(source, tmp / "features.npy", progress=progress)
        else:
            layer = SPACES[space][1]
            network_features(
                source,
                extractor,
                layer,
                tmp,
                batch_size=batch_size,
                device=device,
                num_workers=num_workers,
                progress=progress,
            )
            (tmp / f"{layer}.npy").rename(tmp / "features.npy")
        (tmp / "meta.json").write_text(
            json.dumps({**parts, "dataset": source.id, "n": len(source)}, indent=1)
        )
        entry.parent.mkdir(parents=True, exist_ok=True)
        if not entry.exists():
            tmp.rename(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SpaceFeatures(np.load(entry / "features.npy", mmap_mode="r"), False, key)


def exact_knn(
    queries,
    database,
    k: int,
    *,
    chunk: int = 65536,
    device: str = "cpu",
    margin: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest database rows (L2) of every query: (indices (Q, k) int64, distances (Q, k) float64).

    ``database`` may be a numpy array / memmap (moved to ``device`` chunk by chunk) or a
    torch tensor already on ``device``; ``queries`` likewise (Q, D).
    """
    from tqdm import tqdm

    n = len(database)
    if k < 1 or k > n:
        raise HvqevalError(f"k must be between 1 and the {n} dataset images, got {k}")
    margin = k if margin is None else margin
    keep = min(n, k + margin)
    q = queries if torch.is_tensor(queries) else torch.from_numpy(np.array(queries))
    q = q.to(device=device, dtype=torch.float32)  # (Q, D)
    q_norm = (q * q).sum(dim=1, keepdim=True)  # (Q, 1)
    best_d = torch.full((len(q), 0), float("inf"), device=device)
    best_i = torch.zeros((len(q), 0), dtype=torch.int64, device=device)
    for start in tqdm(
        range(0, n, chunk),
        desc="nearest neighbours",
        unit="chunk",
        disable=not progress,
        leave=False,
    ):
        block = database[start : start + chunk]
        x = block if torch.is_tensor(block) else _read_only_tensor(np.asarray(block))
        x = x.to(device, torch.float32)  # (B, D)
        d2 = q_norm - 2.0 * (q @ x.T) + (x * x).sum(dim=1)[None, :]  # (Q, B)
        take = min(keep, d2.shape[1])
        values, index = torch.topk(d2, take, dim=1, largest=False)
        best_d = torch.cat([best_d, values], dim=1)
        best_i = torch.cat([best_i, index + start], dim=1)
        if best_d.shape[1] > keep:
            best_d, order = torch.topk(best_d, keep, dim=1, largest=False)
            best_i = torch.gather(best_i, 1, order)
    return _rerank(q, database, best_i, k, device)


def _read_only_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor view of a read-only memmap block (never written to, so no copy is needed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _rerank(
    queries: torch.Tensor, database, candidates: torch.Tensor, k: int, device: str, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 distances of the candidates; order by (distance, index); keep k."""
    out_i, out_d = [], []
    for start in range(0, len(candidates), block):
        cand = torch.sort(
            candidates[start : start + block], dim=1
        ).values  # (b, C), index order for ties
        if torch.is_tensor(database):
            rows = database[cand.to(database.device)].to(device, torch.float64)  # (b, C, D)
        else:
            rows = torch.from_numpy(np.asarray(database[cand.cpu().numpy()], dtype=np.float64)).to(
                device
            )
        query = queries[start : start + block].to(device, torch.float64)  # (b, D)
        dist = ((rows - query[:, None, :]) ** 2).sum(dim=2).sqrt()  # (b, C)
        order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
        out_i.append(torch.gather(cand, 1, order).cpu())
        out_d.append(torch.gather(dist, 1, order).cpu())
    return torch.cat(out_i).numpy().astype(np.int64), torch.cat(out_d).numpy()


def _tile(image: torch.Tensor, scale: int) -> Image.Image:
    tile = Image.fromarray(image.permute(1, 2, 0).numpy())
    return (
        tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST) if scale > 1 else tile
    )


def neighbour_figure(sample: torch.Tensor, neighbours: list[torch.Tensor], path: Path) -> None:
    """Figure 11-13 layout: the sample top-left (red frame), then its neighbours row by row."""
    size = sample.shape[-1]
    scale = max(1, math.ceil(96 / size))  # small images are enlarged (nearest) to stay visible
    cell, pad = size * scale, 4
    tiles = [sample] + list(neighbours)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    canvas = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, image in enumerate(tiles):
        x, y = pad + (i % cols) * (cell + pad), pad + (i // cols) * (cell + pad)
        canvas.paste(_tile(image, scale), (x, y))
        if i == 0:
            draw.rectangle(
                [x - 2, y - 2, x + cell + 1, y + cell + 1], outline=(220, 30, 30), width=2
            )
    canvas.save(path)


def write_outputs(
    out_dir: Path,
    samples,
    dataset,
    sample_indices,
    indices: np.ndarray,
    distances: np.ndarray,
    space: str,
) -> Path:
    """One PNG per sample and ``neighbours.csv`` (sample, rank, dataset_index, dataset_path,
    distance, space). The folder then holds this run's figures of ``space`` only: those of an
    earlier run with other samples would otherwise sit beside a CSV that does not list them."""
    import io

    from models import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "neighbours.csv"
    figures = {i: out_dir / f"sample_{i:06d}_{space}.png" for i in sample_indices}
    for stale in set(out_dir.glob(f"sample_*_{space}.png")) - set(figures.values()):
        stale.unlink()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sample", "rank", "dataset_index", "dataset_path", "distance", "space"])
    for row, sample_index in enumerate(sample_indices):
        for rank, (j, dist) in enumerate(zip(indices[row], distances[row]), start=1):
            writer.writerow(
                [
                    samples.describe(sample_index),
                    rank,
                    int(j),
                    dataset.describe(int(j)),
                    f"{dist:.6g}",
                    space,
                ]
            )
        neighbour_figure(
            samples[sample_index],
            [dataset[int(j)] for j in indices[row]],
            figures[sample_index],
        )
    atomic_write_text(csv_path, text.getvalue())  # written whole, after the figures
    return csv_path
