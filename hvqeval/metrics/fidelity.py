"""IS, FID, KID and precision/recall from features (paper Section 6, Table 1).

Functions are named by step, like torch-fidelity: ``features_to_statistics`` ->
``statistics_to_fid``; ``logits_to_isc``; ``features_to_kid``; ``features_to_prc``.
IS, KID and precision/recall call torch-fidelity's own implementations; FID uses its
formula with a more careful matrix square root:

    FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))        (Heusel et al. 2017)

``tr((S_1 S_2)^(1/2))`` equals ``tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2))``; the inner matrix is
symmetric positive semi-definite, so its eigenvalues come from ``numpy.linalg.eigvalsh`` in
float64 and tiny negative round-off values are clipped to zero. This avoids the complex
eigenvalues of the non-symmetric product that appear when n < feature dimension (the
covariance is then singular). Tests check it against ``scipy.linalg.sqrtm``.

IS is the mean ± std over ``splits`` (10, as in Table 1's ``18.10 ± 0.96``) of
exp(E_x KL(p(y|x) || p(y))) over *shuffled* samples: sample sets are stored class by class,
and class-sorted splits each contain few classes, which changes IS several-fold.

Also here: FID∞ (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and
where to find them": FID is linear in 1/N; fit it on subsets and extrapolate to 1/N = 0)
and bootstrap intervals for FID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

KEY_ISC_MEAN = "isc"
KEY_FID = "fid"
KEY_KID = "kid"
KEY_PRECISION = "precision"
KEY_RECALL = "recall"
KEY_F_SCORE = "f_score"
KEY_FID_CLASS = "fid_class"
KEY_FID_CLASS_MEAN = "fid_class_mean"
KEY_FID_INFINITY = "fid_infinity"

# Defaults equal torch-fidelity's (``torch_fidelity.defaults.DEFAULTS``: ``rng_seed``,
# ``isc_splits``, ``kid_subsets``, ``kid_subset_size``, ``prc_neighborhood``), so a number
# computed at defaults here is the number ``torch_fidelity.calculate_metrics`` gives at its
# defaults; tests/hvqeval/test_metrics_defaults.py checks both the values and the numbers.
DEFAULT_SEED = 2020
DEFAULT_ISC_SPLITS = 10
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
DEFAULT_PRC_NEIGHBOURHOOD = 3
DEFAULT_PRC_BATCH_SIZE = 10000

# The one deliberate difference from torch-fidelity, recorded in every FID row: its
# tr((S_1 S_2)^(1/2)) takes eigenvalues of the non-symmetric product, which is exact only
# while both covariances have full rank (n > D); below that it returns round-off-driven
# complex values. hvqeval's symmetric square root equals it (to ~1e-5 relative) for
# n > D and stays exact below.
FID_SQRT = "symmetric-eigh-float64"


@dataclass(frozen=True)
class FidStatistics:
    """Mean (D,) and covariance (D, D) of features, float64, over n images."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def features_to_statistics(
    features: np.ndarray, chunk: int = 8192, device: str = "cpu"
) -> FidStatistics:
    """Two passes over (N, D) features (a memmap is fine) in chunks, accumulating in float64.

    Equals ``np.mean(f, 0)`` and ``np.cov(f, rowvar=False)`` (unbiased, N - 1) without
    holding a float64 copy of all features. ``device="cuda"`` does the float64 products on
    the GPU (50,000 x 2048 features: ~0.4 TFLOP, seconds on CPU cores).
    """
    n, d = features.shape
    if n < 2:
        raise ValueError(f"FID statistics need at least 2 images, got {n}")
    if device != "cpu":
        return _statistics_torch(features, chunk, device)
    total = np.zeros(d, dtype=np.float64)
    for start in range(0, n, chunk):
        total += np.asarray(features[start : start + chunk], dtype=np.float64).sum(axis=0)
    mu = total / n
    sigma = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, chunk):
        centred = np.asarray(features[start : start + chunk], dtype=np.float64) - mu  # (B, D)
        sigma += centred.T @ centred
    sigma /= n - 1
    return FidStatistics(mu=mu, sigma=sigma, n=n)


def _statistics_torch(features: np.ndarray, chunk: int, device: str) -> FidStatistics:
    n, d = features.shape

    def block(start: int) -> torch.Tensor:
        return torch.from_numpy(np.array(features[start : start + chunk], dtype=np.float64)).to(
            device
        )

    total = torch.zeros(d, dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        total += block(start).sum(dim=0)
    mu = total / n
    sigma = torch.zeros((d, d), dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        centred = block(start) - mu  # (B, D)
        sigma += centred.T @ centred
    sigma /= n - 1
    return FidStatistics(mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy(), n=n)


def matrix_sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via ``eigh`` (float64)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, device: str = "cpu") -> float:
    """tr((S_1 S_2)^(1/2)) for covariance matrices, through eigenvalues of S1^½ S2 S1^½."""
    if device != "cpu":  # the same float64 eigenproblems with torch on the GPU
        s1 = torch.as_tensor(sigma1, dtype=torch.float64, device=device)
        s2 = torch.as_tensor(sigma2, dtype=torch.float64, device=device)
        values, vectors = torch.linalg.eigh((s1 + s1.T) / 2)
        root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
        inner = root1 @ s2 @ root1
        return float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum())
    root1 = matrix_sqrt_psd(sigma1)
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def trace_sqrt_product_low_rank(features1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S_1 S_2)^(1/2)) when S_1 is the covariance of n1 <= D rows ``features1``.

    With A = (F_1 - mu_1)^T / sqrt(n1 - 1) (D x n1), S_1 = A A^T, and the non-zero
    eigenvalues of S_1 S_2 are those of the symmetric PSD n1 x n1 matrix A^T S_2 A, so an
    n1 x n1 ``eigvalsh`` replaces a D x D one -- exact, and fast for per-class FID.
    """
    x = np.asarray(features1, dtype=np.float64)
    a = (x - x.mean(axis=0)).T / np.sqrt(len(x) - 1)  # (D, n1)
    inner = a.T @ np.asarray(sigma2, dtype=np.float64) @ a  # (n1, n1)
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def statistics_to_fid(
    stats1: FidStatistics,
    stats2: FidStatistics,
    features1: np.ndarray | None = None,
    device: str = "cpu",
) -> float:
    """FID from statistics; ``features1`` (the rows behind ``stats1``) enables the low-rank path."""
    if stats1.mu.shape != stats2.mu.shape:
        raise ValueError(f"feature dimensions differ: {stats1.mu.shape} vs {stats2.mu.shape}")
    diff = stats1.mu - stats2.mu
    if features1 is not None and len(features1) <= len(stats1.mu):
        cross = trace_sqrt_product_low_rank(features1, stats2.sigma)
    else:
        cross = trace_sqrt_product(stats1.sigma, stats2.sigma, device)
    value = diff @ diff + np.trace(stats1.sigma) + np.trace(stats2.sigma) - 2.0 * cross
    return float(value)


def differs_from_torch_fidelity(n: int, n_reference: int, dim: int) -> str | None:
    """Why this FID may differ from torch-fidelity's on the same features, or None when it does not.

    Either covariance of n <= D rows is singular, and then torch-fidelity's square root of
    the non-symmetric S_1 S_2 picks up round-off eigenvalues that ours clips to zero.
    """
    smallest = min(n, n_reference)
    if smallest > dim:
        return None
    return (
        f"n = {smallest} <= feature dimension {dim}: the covariance is singular; hvqeval's symmetric "
        "square root is exact here, torch-fidelity's eigenvalues of the non-symmetric product are not, "
        "so the two FIDs differ"
    )


def features_to_fid(features1: np.ndarray, stats2: FidStatistics) -> float:
    """FID of (N, D) features against reference statistics (low-rank path when N <= D)."""
    return statistics_to_fid(features_to_statistics(features1), stats2, features1)


def logits_to_isc(
    logits: np.ndarray, splits: int = DEFAULT_ISC_SPLITS, seed: int = DEFAULT_SEED
) -> tuple[float, float]:
    """IS mean and std over ``splits`` splits of shuffled samples (torch-fidelity's code)."""
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )

    if len(logits) < splits:
        raise ValueError(
            f"IS with {splits} splits needs at least {splits} images, got {len(logits)}"
        )
    out = isc_features_to_metric(
        torch.from_numpy(np.array(logits, dtype=np.float32)),
        splits=splits,
        shuffle=True,
        rng_seed=seed,
    )
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


def features_to_kid(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    subsets: int = DEFAULT_KID_SUBSETS,
    subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """KID mean and std over random subsets (torch-fidelity's polynomial-kernel MMD)."""
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    out = kid_features_to_metric(
        torch.from_numpy(np.array(features1, dtype=np.float32)),
        torch.from_numpy(np.array(features2, dtype=np.float32)),
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        rng_seed=seed,
        verbose=False,
    )
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


def features_to_prc(
    features_samples: np.ndarray,
    features_reference: np.ndarray,
    *,
    neighbourhood: int = DEFAULT_PRC_NEIGHBOURHOOD,
    batch_size: int = DEFAULT_PRC_BATCH_SIZE,
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), torch-fidelity's code."""
    from torch_fidelity.metric_prc import (
        KEY_METRIC_F_SCORE,
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    out = prc_features_to_metric(
        torch.from_numpy(np.array(features_samples, dtype=np.float32)),
        torch.from_numpy(np.array(features_reference, dtype=np.float32)),
        prc_neighborhood=neighbourhood,
        prc_batch_size=batch_size,
        save_cpu_ram=True,
        verbose=False,
    )
    return {
        KEY_PRECISION: out[KEY_METRIC_PRECISION],
        KEY_RECALL: out[KEY_METRIC_RECALL],
        KEY_F_SCORE: out[KEY_METRIC_F_SCORE],
    }


def fid_infinity(
    features: np.ndarray,
    reference: FidStatistics,
    *,
    points: int = 15,
    seed: int = 0,
    min_fraction: float = 0.2,
) -> tuple[float, list[tuple[int, float]]]:
    """FID∞: FID on ``points`` random subsets of sizes min_fraction*N .. N, fit a + b/N, return a.

    Chong & Forsyth (2020) show FID_N = FID∞ + k / N to good accuracy; they use 15 sizes
    from 5,000 to 50,000 (min_fraction 0.1). Returns the intercept and the (N, FID_N) points.
    """
    n = len(features)
    sizes = np.unique(np.linspace(max(2, int(min_fraction * n)), n, points).astype(int))
    if len(sizes) < 2:
        raise ValueError(f"FID∞ needs at least two subset sizes; {n} images are too few")
    rng = np.random.default_rng(seed)
    measured = []
    for size in sizes:
        subset = np.sort(rng.choice(n, size=size, replace=False))
        measured.append((int(size), features_to_fid(np.asarray(features[subset]), reference)))
    inverse = np.array([1.0 / s for s, _ in measured])
    values = np.array([v for _, v in measured])
    slope, intercept = np.polyfit(inverse, values, 1)
    return float(intercept), measured


def bootstrap_fid(
    features: np.ndarray,
    reference: FidStatistics,
    *,
    resamples: int = 100,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile bootstrap of FID over the sample side (reference statistics held fixed)."""
    rng = np.random.default_rng(seed)
    n = len(features)
    values = []
    for _ in range(resamples):
        index = rng.integers(0, n, size=n)
        values.append(features_to_fid(np.asarray(features)[index], reference))
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {
        "resamples": resamples,
        "level": level,
        "low": float(low),
        "high": float(high),
        "std": float(np.std(values, ddof=1)),
    }
