"""Synthetic human studies with known truth, in the design of Appendix G.

Used to check that the reports recover the truth within their stated intervals, and useful to
plan a study (how many raters/pairs a difference needs). Both simulators return answers as an
export-shaped DataFrame of strings (the column contract of ``analysis.responses``) and the truth.

Ratings: latent realism ``mu_model + u_image + v_rater + e`` (all Gaussian), cut at 1.5, 2.5,
3.5, 4.5 into a 1-5 rating; the true mean rating is ``1 + sum_k Phi((mu - t_k) / s)`` with
``s^2`` the sum of the variances.

Pairwise: A is chosen when ``delta_class + q_a - q_b + beta * (+1 if A is left else -1) +
tau_rater + e > 0`` with ``e ~ N(0, 1)``; sample qualities ``q`` are shared by the ten pairs a
sample appears in, ``tau`` is a rater's taste for A. With ``s^2 = 1 + 2 sd_sample^2 +
sd_taste^2`` the true share of A is ``(1 - p_unknown) * (Phi((delta + beta)/s) +
Phi((delta - beta)/s)) / 2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.responses import COLUMNS

THRESHOLDS = np.array([1.5, 2.5, 3.5, 4.5])


def _distinct_raters(rng: np.random.Generator, n_items: int, n_raters: int, k: int) -> np.ndarray:
    """(n_items, k) distinct rater indices per item."""
    return np.argsort(rng.random((n_items, n_raters)), axis=1)[:, :k]


def pairing_design(rng: np.random.Generator, n: int = 50, uses: int = 10) -> np.ndarray:
    """(n * uses, 2) pairs (a, b) of sample indices, each sample used exactly ``uses`` times, no repeats."""
    offsets = rng.choice(n, size=uses, replace=False)
    a = np.repeat(np.arange(n), uses)
    b = (a + np.tile(offsets, n)) % n
    return np.column_stack([rng.permutation(n)[a], rng.permutation(n)[b]])


def _names(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


def _frame(columns: dict, n: int) -> pd.DataFrame:
    data = {c: columns.get(c, np.full(n, "", dtype=object)) for c in COLUMNS}
    return pd.DataFrame({c: np.asarray(v).astype(str) for c, v in data.items()})


def expected_rating(mu: float, scale: float) -> float:
    return float(1 + stats.norm.cdf((mu - THRESHOLDS) / scale).sum())


def simulate_rating_study(
    rng: np.random.Generator,
    model_means: dict[str, float],
    n_classes: int = 20,
    per_class: int = 50,
    raters_per_item: int = 3,
    n_raters: int = 60,
    sd_image: float = 0.5,
    sd_rater: float = 0.4,
    sd_noise: float = 0.7,
    p_unknown: float = 0.0,
    study: str = "ratings",
) -> tuple[pd.DataFrame, dict[str, float]]:
    """A rating study: returns (answers, {model: true mean rating})."""
    models = list(model_means)
    n_img = len(models) * n_classes * per_class
    model_idx = np.repeat(np.arange(len(models)), n_classes * per_class)  # (n_img,)
    class_idx = np.tile(np.repeat(np.arange(n_classes), per_class), len(models))  # (n_img,)
    mu = np.array([model_means[m] for m in models])[model_idx] + rng.normal(0, sd_image, n_img)
    raters = _distinct_raters(rng, n_img, n_raters, raters_per_item)  # (n_img, k)
    bias = rng.normal(0, sd_rater, n_raters)
    latent = mu[:, None] + bias[raters] + rng.normal(0, sd_noise, raters.shape)  # (n_img, k)
    rating = 1 + (latent[..., None] > THRESHOLDS).sum(-1)
    img = np.repeat(np.arange(n_img), raters_per_item)
    unknown = rng.random(img.size) < p_unknown
    names = np.array(models, dtype=object)
    columns = {
        "study": np.full(img.size, study),
        "kind": np.full(img.size, "rating"),
        "rater": _names("r", n_raters)[raters.ravel()],
        "item": img,
        "class_id": class_idx[img],
        "class_name": _names("class ", n_classes)[class_idx[img]],
        "model_a": names[model_idx[img]],
        "sample_a": img,
        "rating": np.where(unknown, "", rating.ravel().astype(str)),
        "choice": np.where(unknown, "unknown", ""),
        "response_ms": rng.integers(800, 6000, img.size),
    }
    scale = float(np.sqrt(sd_image**2 + sd_rater**2 + sd_noise**2))
    truth = {m: expected_rating(model_means[m], scale) for m in models}
    return _frame(columns, img.size), truth


def simulate_pairwise_study(
    rng: np.random.Generator,
    class_effects: np.ndarray,
    per_class: int = 50,
    uses: int = 10,
    raters_per_pair: int = 3,
    n_raters: int = 60,
    sd_sample: float = 0.4,
    sd_taste: float = 0.2,
    position_effect: float = 0.1,
    p_unknown: float = 0.0018,
    models: tuple[str, str] = ("msp", "ff"),
    study: str = "pairwise",
) -> tuple[pd.DataFrame, dict]:
    """A pairwise study; truth holds percentages: ``pct_a`` per class (array), ``pct_a_all``, ``left_wins``."""
    class_effects = np.asarray(class_effects, dtype=float)
    n_classes = class_effects.size
    pairs = np.concatenate(
        [pairing_design(rng, per_class, uses) + c * per_class for c in range(n_classes)]
    )
    pair_class = np.repeat(np.arange(n_classes), per_class * uses)  # (P,)
    q_a = rng.normal(0, sd_sample, n_classes * per_class)
    q_b = rng.normal(0, sd_sample, n_classes * per_class)
    raters = _distinct_raters(rng, len(pairs), n_raters, raters_per_pair)  # (P, k)
    taste = rng.normal(0, sd_taste, n_raters)
    a_left = rng.random(raters.shape) < 0.5  # (P, k)
    latent = (
        class_effects[pair_class][:, None]
        + (q_a[pairs[:, 0]] - q_b[pairs[:, 1]])[:, None]
        + position_effect * np.where(a_left, 1.0, -1.0)
        + taste[raters]
        + rng.normal(0, 1, raters.shape)
    )
    choice = np.where(latent > 0, "a", "b").astype(object).ravel()
    choice[rng.random(choice.size) < p_unknown] = "unknown"
    item = np.repeat(np.arange(len(pairs)), raters_per_pair)
    cls = pair_class[item]
    columns = {
        "study": np.full(item.size, study),
        "kind": np.full(item.size, "pairwise"),
        "rater": _names("r", n_raters)[raters.ravel()],
        "item": item,
        "class_id": cls,
        "class_name": _names("class ", n_classes)[cls],
        "model_a": np.full(item.size, models[0]),
        "sample_a": pairs[item, 0],
        "model_b": np.full(item.size, models[1]),
        "sample_b": pairs[item, 1],
        "left": np.where(a_left.ravel(), "a", "b"),
        "choice": choice,
        "response_ms": rng.integers(800, 6000, item.size),
    }
    s = np.sqrt(1 + 2 * sd_sample**2 + sd_taste**2)
    b = position_effect
    share_a = (
        stats.norm.cdf((class_effects + b) / s) + stats.norm.cdf((class_effects - b) / s)
    ) / 2
    left = (stats.norm.cdf((b + class_effects) / s) + stats.norm.cdf((b - class_effects) / s)) / 2
    truth = {
        "pct_a": 100 * (1 - p_unknown) * share_a,
        "pct_a_all": 100 * (1 - p_unknown) * share_a.mean(),
        "left_wins": 100 * left.mean(),
        "share_a": 100 * share_a,
    }
    return _frame(columns, item.size), truth
