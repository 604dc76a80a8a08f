"""IS / FID formulas against independent numpy/scipy implementations (paper Section 6)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from metrics_helpers import numpy_isc, scipy_fid

from hvqeval.metrics import fidelity


def correlated(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


def test_statistics_equal_numpy_mean_and_cov():
    f = correlated(500, 16, 0)
    stats = fidelity.features_to_statistics(f, chunk=64)  # several chunks
    assert np.allclose(stats.mu, f.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    assert np.allclose(
        stats.sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-12, atol=1e-12
    )
    assert stats.n == 500


def test_matrix_sqrt_matches_scipy_sqrtm():
    sigma = np.cov(correlated(300, 24, 1), rowvar=False)
    root = fidelity.matrix_sqrt_psd(sigma)
    assert np.allclose(root, scipy.linalg.sqrtm(sigma).real, rtol=1e-8, atol=1e-10)
    assert np.allclose(root @ root, sigma, atol=1e-10)


def test_fid_equals_scipy_reference():
    f1, f2 = correlated(400, 32, 2), correlated(300, 32, 3, shift=0.3)
    ours = fidelity.statistics_to_fid(
        fidelity.features_to_statistics(f1), fidelity.features_to_statistics(f2)
    )
    reference = scipy_fid(f1.astype(np.float64), f2.astype(np.float64))
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours > 1.0  # a real difference (shifted mean: |0.3|^2 * 32 = 2.88 alone)


def test_low_rank_path_equals_full_path_when_n_below_dimension():
    f1, f2 = correlated(12, 40, 4), correlated(200, 40, 5, shift=0.1)
    s1, s2 = fidelity.features_to_statistics(f1), fidelity.features_to_statistics(f2)
    full = fidelity.statistics_to_fid(s1, s2)  # 40 x 40 eigenproblems
    low_rank = fidelity.statistics_to_fid(s1, s2, f1)  # 12 x 12 eigenproblem
    # The full path adds sqrt(round-off) from S1's 28 zero eigenvalues (~1e-8 each).
    assert low_rank == pytest.approx(full, rel=1e-7)
    assert low_rank == pytest.approx(
        scipy_fid(f1.astype(np.float64), f2.astype(np.float64)), rel=1e-6
    )


def test_fid_of_a_set_with_itself_is_zero():
    f = correlated(300, 16, 6)
    stats = fidelity.features_to_statistics(f)
    assert abs(fidelity.statistics_to_fid(stats, stats)) < 1e-8


def test_isc_equals_numpy_implementation_on_the_same_shuffled_splits():
    logits = np.random.default_rng(7).normal(scale=3.0, size=(200, 12)).astype(np.float32)
    mean, std = fidelity.logits_to_isc(logits, splits=10, seed=3)
    # torch-fidelity shuffles with np.random.RandomState(seed).permutation(N).
    expected = numpy_isc(logits, 10, np.random.RandomState(3).permutation(200))
    assert mean == pytest.approx(expected[0], rel=1e-6)
    assert std == pytest.approx(expected[1], rel=1e-6)


def test_isc_of_uniform_predictions_is_one():
    # Equal logits -> p(y|x) = p(y) = uniform -> KL = 0 -> IS = exp(0) = 1 exactly.
    mean, std = fidelity.logits_to_isc(np.zeros((50, 7), dtype=np.float32), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_isc_of_confident_balanced_predictions_is_the_class_count():
    # One-hot-like predictions spread evenly over K classes in every split: IS -> K.
    k = 5
    logits = np.full((100, k), -50.0, dtype=np.float32)
    logits[np.arange(100), np.arange(100) % k] = 50.0
    mean, _ = fidelity.logits_to_isc(logits, splits=1)
    assert mean == pytest.approx(k, rel=1e-6)


def test_shuffling_matters_for_class_sorted_samples():
    # Sample sets are stored class by class: unshuffled splits would each see ~1 class.
    k, n = 10, 200
    logits = np.full((n, k), -20.0, dtype=np.float32)
    labels = np.sort(np.arange(n) % k)  # class-sorted
    logits[np.arange(n), labels] = 20.0
    shuffled, _ = fidelity.logits_to_isc(logits, splits=10)
    sorted_splits = numpy_isc(logits, 10, np.arange(n))[0]
    assert shuffled > 8.0
    assert sorted_splits < 1.5  # one class per split -> IS ~ 1


def test_fid_infinity_recovers_the_intercept_of_a_one_over_n_law():
    reference = fidelity.features_to_statistics(correlated(4000, 8, 8))
    samples = correlated(2000, 8, 9, shift=0.2)
    value, points = fidelity.fid_infinity(samples, reference, points=8, seed=0)
    sizes = [n for n, _ in points]
    assert sizes[0] >= 400 and sizes[-1] == 2000
    assert value < points[-1][1]  # extrapolation removes the positive 1/N bias


def test_bootstrap_interval_brackets_the_estimate():
    reference = fidelity.features_to_statistics(correlated(500, 6, 10))
    samples = correlated(300, 6, 11, shift=0.5)
    fid = fidelity.features_to_fid(samples, reference)
    interval = fidelity.bootstrap_fid(samples, reference, resamples=40, seed=1)
    assert interval["low"] < fid < interval["high"] + interval["std"]
    assert interval["std"] > 0
