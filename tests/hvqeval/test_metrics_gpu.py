"""GPU paths of the evaluation suite equal their CPU paths (run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hvqeval.metrics import fidelity
from hvqeval.metrics.evaluation import EvalSettings, evaluate
from hvqeval.metrics.neighbours import exact_knn

pytestmark = pytest.mark.gpu


def test_fid_statistics_and_square_root_on_gpu_equal_cpu():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(3000, 64)).astype(np.float32)
    f2 = (rng.normal(size=(2500, 64)) + 0.2).astype(np.float32)
    cpu = fidelity.statistics_to_fid(
        fidelity.features_to_statistics(f1), fidelity.features_to_statistics(f2)
    )
    s1 = fidelity.features_to_statistics(f1, chunk=700, device="cuda")
    s2 = fidelity.features_to_statistics(f2, chunk=700, device="cuda")
    assert np.allclose(
        s1.sigma, np.cov(f1.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12
    )
    assert fidelity.statistics_to_fid(s1, s2, device="cuda") == pytest.approx(cpu, rel=1e-9)


def test_exact_knn_on_gpu_equals_cpu():
    rng = np.random.default_rng(1)
    database = rng.normal(size=(20000, 128)).astype(np.float32)
    queries = rng.normal(size=(100, 128)).astype(np.float32)
    cpu = exact_knn(queries, database, 10, chunk=4096)
    gpu = exact_knn(
        torch.from_numpy(queries).cuda(),
        torch.from_numpy(database).cuda(),
        10,
        chunk=4096,
        device="cuda",
    )
    assert np.array_equal(cpu[0], gpu[0]) and np.allclose(cpu[1], gpu[1], rtol=1e-12)


def test_domain_metrics_on_gpu_match_cpu(small_sample_set, small_reference, domain_weights):
    def run(device):
        settings = EvalSettings(
            metrics=("isc", "fid"),
            extractor="domain",
            weights=str(domain_weights),
            splits=2,
            device=device,
            use_cache=False,
            progress=False,
        )
        return {
            r.metric: r.value
            for r in evaluate(str(small_sample_set), str(small_reference), settings).rows
        }

    cpu, gpu = run("cpu"), run("cuda")
    assert gpu["isc"] == pytest.approx(cpu["isc"], rel=1e-4)
    assert gpu["fid"] == pytest.approx(cpu["fid"], rel=1e-3, abs=1e-4)
