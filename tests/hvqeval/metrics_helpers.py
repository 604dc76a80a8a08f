"""Helpers of the evaluation-suite tests: small inputs on disk and independent formulas."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from PIL import Image
from scipy.special import log_softmax, softmax

from hvqeval.sample_set import SampleSetWriter
from models import open_dataset


def write_sample_set(path, n: int, *, size: int = 32, seed: int = 5, model: str = "tiny_ff"):
    """A sample set of ``n`` shapes images stored class by class, like real sample sets."""
    data = open_dataset("shapes", "test", image_size=size, length=n, seed=seed)
    order = sorted(range(n), key=lambda i: data[i][1])  # class-sorted, as `hvqeval sample` writes
    with SampleSetWriter(path, model=model, image_size=size, seed=seed) as writer:
        for i in order:
            image, class_id = data[i]
            writer.add(image.permute(1, 2, 0).numpy(), class_id, data.class_names[class_id])
    return path


def write_image_folder(path, n: int, *, size: int = 32, seed: int = 9, class_folders: bool = True):
    data = open_dataset("shapes", "val", image_size=size, length=n, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, class_id = data[i]
        folder = path / f"c{class_id}" if class_folders else path
        folder.mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return path


def rng_images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Textbook FID (Heusel et al. 2017) with scipy's general matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def numpy_isc(logits: np.ndarray, splits: int, permutation: np.ndarray) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split of the permuted samples; mean and std."""
    logits = logits[permutation].astype(np.float64)
    n = len(logits)
    scores = []
    for i in range(splits):
        part = logits[i * n // splits : (i + 1) * n // splits]
        p, log_p = softmax(part, axis=1), log_softmax(part, axis=1)
        marginal = p.mean(axis=0)
        scores.append(np.exp((p * (log_p - np.log(marginal))).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
