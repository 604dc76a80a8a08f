"""Bradley-Terry strengths of several models from all pairwise studies that share models.

``P(i beats j) = 1 / (1 + exp(-(s_i - s_j)))``, fitted by maximum likelihood as a binomial GLM
(statsmodels) on the win counts of every model pair, with the first model in ``reference``
(default: the alphabetically first) fixed at strength 0. Intervals: pigeonhole bootstrap over
images (within class) and raters -- each replicate reweights the answers and refits (conservative,
see ``analysis.clustered``).

:func:`bradley_terry` returns one row per model: ``model, strength, ci_low, ci_high,
p_beats_reference, n_answers, n_wins`` sorted by strength, high to low.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from analysis.errors import AnalysisError

BT_COLUMNS = ["model", "strength", "ci_low", "ci_high", "p_beats_reference", "n_answers", "n_wins"]


def _fit(
    wins: np.ndarray, losses: np.ndarray, i: np.ndarray, j: np.ndarray, n_models: int
) -> np.ndarray:
    """Strengths (n_models,) with model 0 fixed at 0, from win/loss counts of pairs (i, j)."""
    exog = np.zeros((len(i), n_models))
    exog[np.arange(len(i)), i] = 1.0
    exog[np.arange(len(i)), j] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GLM(
            np.column_stack([wins, losses]), exog[:, 1:], family=sm.families.Binomial()
        ).fit()
    return np.concatenate([[0.0], np.asarray(fit.params)])


def bradley_terry(
    responses: pd.DataFrame,
    reference: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    answers = responses[(responses["kind"] == "pairwise") & responses["usable"]].reset_index(
        drop=True
    )
    if answers.empty:
        return pd.DataFrame(columns=BT_COLUMNS)
    models = sorted(set(answers["model_a"]) | set(answers["model_b"]))
    if reference is not None:
        if reference not in models:
            raise AnalysisError(
                f"--reference {reference!r} is not in the pairwise studies; models: {', '.join(models)}"
            )
        models.remove(reference)
        models.insert(0, reference)
    index = {m: k for k, m in enumerate(models)}
    a = answers["model_a"].map(index).to_numpy()
    b = answers["model_b"].map(index).to_numpy()
    if np.any(a == b):
        raise AnalysisError(
            "a pairwise study compares a model with itself; Bradley-Terry needs two models per pair"
        )
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    graph = coo_matrix((np.ones(lo.size), (lo, hi)), shape=(len(models), len(models)))
    n_components, labels = connected_components(graph, directed=False)
    if n_components > 1:
        groups = [
            ", ".join(m for m, l in zip(models, labels) if l == c) for c in range(n_components)
        ]
        raise AnalysisError(
            "the pairwise studies do not connect all models (separate groups: "
            + " | ".join(groups)
            + "); strengths are only comparable within a connected group"
        )
    winner = np.where(answers["choice"] == "a", a, b)
    lo_won = (winner == lo).astype(float)
    pair_codes, pair_index = np.unique(lo * len(models) + hi, return_inverse=True)
    pi, pj = pair_codes // len(models), pair_codes % len(models)

    def strengths(weights: np.ndarray) -> np.ndarray:
        wins = np.bincount(pair_index, weights * lo_won, minlength=len(pair_codes))
        total = np.bincount(pair_index, weights, minlength=len(pair_codes))
        return _fit(wins, total - wins, pi, pj, len(models))

    n_wins = np.bincount(winner, minlength=len(models))
    n_ans = np.bincount(a, minlength=len(models)) + np.bincount(b, minlength=len(models))
    never = [m for m, w, n in zip(models, n_wins, n_ans) if w in (0, n)]
    if never:
        raise AnalysisError(
            f"model {never[0]!r} won every or no comparison; its Bradley-Terry strength is "
            "infinite (collect more comparisons)"
        )
    estimate = strengths(np.ones(len(answers)))
    factors = pd.DataFrame(
        {"image_a": answers["image_a"], "image_b": answers["image_b"], "rater": answers["rater"]}
    )
    # One image factor: a sample that appears in several studies keeps one weight.
    images = pd.concat([factors["image_a"], factors["image_b"]])
    image_class = pd.concat([answers["class_name"], answers["class_name"]])
    codes, levels = pd.factorize(images)
    rng = np.random.default_rng(seed)
    reps = np.full((n_boot, len(models)), np.nan)
    level_class = pd.Series(image_class.to_numpy()).groupby(codes).first().to_numpy()
    raters, n_raters = pd.factorize(answers["rater"])[0], answers["rater"].nunique()
    for r in range(n_boot):
        w_img = np.zeros(len(levels))
        for cls in np.unique(level_class):
            members = np.flatnonzero(level_class == cls)
            w_img[members] = rng.multinomial(members.size, np.full(members.size, 1 / members.size))
        w_rater = rng.multinomial(n_raters, np.full(n_raters, 1 / n_raters))
        w = w_img[codes[: len(answers)]] * w_img[codes[len(answers) :]] * w_rater[raters]
        try:
            reps[r] = strengths(w)
        except (np.linalg.LinAlgError, ValueError):
            continue  # a replicate without information on some pair; left out of the percentiles
    alpha = 1 - confidence
    low, high = (
        np.nanquantile(reps, [alpha / 2, 1 - alpha / 2], axis=0) if n_boot else (np.nan, np.nan)
    )
    table = pd.DataFrame(
        {
            "model": models,
            "strength": estimate,
            "ci_low": low,
            "ci_high": high,
            "p_beats_reference": 1 / (1 + np.exp(-estimate)),
            "n_answers": n_ans,
            "n_wins": n_wins,
        }
    )
    return table.sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)
