"""Uncertainty for means of answers that share images and raters (beyond the paper).

Appendix G's design reuses everything: each image is rated by 3 raters, each pairwise sample
appears in 10 pairs, each pair is answered 3 times, and every rater answers many items. Answers
are therefore not independent and the naive standard error ``sd / sqrt(n)`` is too small.

Two interval types are offered; every table says which one it shows:

``cluster`` (default)
    Multiway cluster-robust standard error of the mean (Cameron, Gelbach & Miller 2011):
    ``V = sum over non-empty subsets S of the factors of (-1)^(|S|+1) V_S`` where ``V_S`` is
    statsmodels' one-way cluster-robust variance (``cov_cluster``) clustering on the
    intersection of the factors in ``S``. Interval ``mean +- t * sqrt(V)`` with ``G - 1``
    degrees of freedom, ``G`` the smallest number of clusters of any one factor (CGM's
    small-sample advice). Nominal coverage in simulations of the paper's design
    (tests/analysis/test_simulated.py). A percentage (a proportion) gets the Wilson score
    interval at the effective sample size ``p (1 - p) / V`` instead (:func:`proportion_interval`):
    the same interval where the data are many, and always within 0-100% where they are few
    (``p +- t * sqrt(V)`` leaves [0, 1] on a tiny study).
``bootstrap``
    Pigeonhole bootstrap (Owen 2007): images (within class) and raters are resampled
    independently and each answer is weighted by the product of its levels' multiplicities;
    percentile interval. Conservative (wider than nominal) for sparse crossed designs such as
    Appendix G's, because each answer's own noise is counted up to ``2^k - 1`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.sandwich_covariance import cov_cluster

INTERVALS = ("cluster", "bootstrap")
INTERVAL_LABELS = {
    "cluster": "multiway cluster-robust t interval (clusters: {factors}; percentages: Wilson score "
    "interval at the clustered effective sample size)",
    "bootstrap": "pigeonhole cluster bootstrap percentile interval over {factors}, B={B}",
}


@dataclass(frozen=True)
class MeanEstimate:
    """A mean with its naive and clustered uncertainty."""

    mean: float
    se_naive: float
    se: float  # clustered SE (multiway CGM, or the bootstrap SD)
    ci_low: float
    ci_high: float


def subset_codes(factors: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    """(subset size, cluster codes per answer) for every non-empty subset of the factor columns."""
    single = [pd.factorize(factors[c])[0].astype(np.int64) for c in factors.columns]
    out = []
    for size in range(1, len(single) + 1):
        for subset in combinations(range(len(single)), size):
            combined = single[subset[0]]
            for k in subset[1:]:
                combined = pd.factorize(combined * (single[k].max() + 1) + single[k])[0].astype(
                    np.int64
                )
            out.append((size, combined))
    return out


def cluster_df(codes: list[tuple[int, np.ndarray]]) -> int:
    """Degrees of freedom for the t reference distribution: fewest clusters of one factor, minus 1."""
    return max(1, min(int(c.max()) + 1 for size, c in codes if size == 1) - 1)


def critical_value(confidence: float, df: int) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def multiway_variance(y: np.ndarray, factors: pd.DataFrame | list[tuple[int, np.ndarray]]) -> float:
    """Cluster-robust variance of ``mean(y)`` with clustering on every factor (CGM inclusion-exclusion).

    ``factors`` has one column per clustering dimension, one row per answer (or is the output of
    :func:`subset_codes` for it). A negative estimate (possible in small samples) is replaced by the
    largest one-way variance, as CGM recommend.
    """
    y = np.asarray(y, dtype=float)
    if y.size < 2:
        return float("nan")
    codes = subset_codes(factors) if isinstance(factors, pd.DataFrame) else factors
    fit = sm.OLS(y, np.ones((y.size, 1))).fit()
    total, one_way = 0.0, []
    for size, groups in codes:
        # one cluster carries no information about between-cluster variation
        v = float(cov_cluster(fit, groups)[0, 0]) if groups.max() > 0 else 0.0
        if size == 1:
            one_way.append(v)
        total += v if size % 2 else -v
    return total if total > 0 else max(one_way)


def clustered_mean(y: np.ndarray, factors: pd.DataFrame, confidence: float = 0.95) -> MeanEstimate:
    """Mean of ``y`` with naive SE and the multiway cluster-robust t interval."""
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        return MeanEstimate(*(float("nan"),) * 5)
    mean = float(y.mean())
    se_naive = float(stats.sem(y)) if y.size > 1 else float("nan")
    codes = subset_codes(factors)
    se = float(np.sqrt(multiway_variance(y, codes)))
    t = critical_value(confidence, cluster_df(codes))
    return MeanEstimate(mean, se_naive, se, mean - t * se, mean + t * se)


def proportion_interval(p: float, se: float, n: int, crit: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` with clustered standard error ``se``: the
    effective sample size ``n_eff = p (1 - p) / se^2`` (Kish's design effect) stands in for the
    ``n`` answers, ``crit`` is the critical value. Stays within [0, 1]; ``se`` of 0 (``p`` at 0
    or 1, or no variation) uses ``n`` itself."""
    if not (np.isfinite(p) and n > 0 and np.isfinite(crit)):
        return float("nan"), float("nan")
    n_eff = p * (1 - p) / se**2 if se > 0 and 0 < p < 1 else float(n)
    z2 = crit * crit
    centre = (p + z2 / (2 * n_eff)) / (1 + z2 / n_eff)
    half = crit * np.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff * n_eff)) / (1 + z2 / n_eff)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def pigeonhole_weights(
    rng: np.random.Generator, factors: pd.DataFrame, strata: dict[str, pd.Series] | None, B: int
) -> np.ndarray:
    """Bootstrap weights (B, n_answers): the product over factors of each level's draw count.

    ``strata[f]`` (optional) maps each answer to the stratum of its level of factor ``f``
    (e.g. images are resampled within their class, since the classes are fixed by design).
    """
    n = len(factors)
    weights = np.ones((B, n))
    for column in factors.columns:
        codes, levels = pd.factorize(factors[column])
        counts = np.zeros((B, len(levels)))
        if strata and column in strata:
            level_stratum = pd.Series(np.asarray(strata[column])).groupby(codes).first()
            groups = level_stratum.groupby(level_stratum).groups
        else:
            groups = {None: np.arange(len(levels))}
        for members in groups.values():
            members = np.asarray(members)
            counts[:, members] = rng.multinomial(
                members.size, np.full(members.size, 1 / members.size), size=B
            )
        weights *= counts[:, codes]
    return weights


def bootstrap_ratio(
    numerators: np.ndarray,
    denominator: np.ndarray,
    factors: pd.DataFrame,
    strata: dict[str, pd.Series] | None,
    B: int,
    seed: int,
    chunk_elements: int = 4_000_000,
) -> np.ndarray:
    """Bootstrap replicates (B, k) of ``sum(w * numerators[:, j]) / sum(w * denominator)``.

    Drawn in chunks so that at most ``chunk_elements`` weights exist at once.
    """
    rng = np.random.default_rng(seed)
    numerators = np.asarray(numerators, dtype=float).reshape(len(factors), -1)  # (n, k)
    denominator = np.asarray(denominator, dtype=float)  # (n,)
    per_chunk = max(1, chunk_elements // max(len(factors), 1))
    out = []
    for start in range(0, B, per_chunk):
        w = pigeonhole_weights(rng, factors, strata, min(per_chunk, B - start))  # (b, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((w @ numerators) / (w @ denominator)[:, None])
    return np.concatenate(out) if out else np.empty((0, numerators.shape[1]))


def bootstrap_mean(
    y: np.ndarray,
    factors: pd.DataFrame,
    strata: dict[str, pd.Series] | None,
    B: int,
    seed: int,
    confidence: float = 0.95,
) -> MeanEstimate:
    """Mean of ``y`` with naive SE, bootstrap SD as SE, and the percentile interval."""
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        return MeanEstimate(*(float("nan"),) * 5)
    reps = bootstrap_ratio(y, np.ones_like(y), factors, strata, B, seed)[:, 0]
    alpha = 1 - confidence
    low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
    return MeanEstimate(
        float(y.mean()),
        float(stats.sem(y)) if y.size > 1 else float("nan"),
        float(np.nanstd(reps, ddof=1)),
        float(low),
        float(high),
    )


def interval_label(kind: str, factors: list[str], B: int = 0) -> str:
    return INTERVAL_LABELS[kind].format(factors=", ".join(factors), B=B)
