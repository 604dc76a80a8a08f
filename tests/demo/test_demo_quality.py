"""Reference values and plain warnings beside the demo's numbers (hvqeval.demo.quality/report)."""

from __future__ import annotations

import json

from hvqeval.demo.plan import make_plan
from hvqeval.demo.quality import assess
from hvqeval.demo.report import quality_html

REAL = "Real images (shapes data set)"


def _results(tmp_path, rows):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _steps(level, prior):
    return {
        f"train_{k}_{s}": {"seconds": 1.0, "step": n}
        for k in ("ff", "msp")
        for s, n in (("level1", level), ("prior", prior))
    }


def test_a_model_far_from_the_real_images_gets_a_warning_naming_the_reference(tmp_path):
    results = _results(
        tmp_path,
        [
            {"model": REAL, "metric": "isc", "value": 8.5},
            {"model": REAL, "metric": "fid", "value": 3.0},
            # FF: noise (the first report); MSP: close to the real images
            {"model": "tiny_ff", "metric": "isc", "value": 1.12},
            {"model": "tiny_ff", "metric": "fid", "value": 153.0},
            {"model": "tiny_ff", "metric": "nll_bpd", "value": 7.4},
            {"model": "tiny_msp", "metric": "isc", "value": 7.9},
            {"model": "tiny_msp", "metric": "fid", "value": 9.0},
            {"model": "tiny_msp", "metric": "nll_bpd", "value": 2.1},
        ],
    )
    ff, msp = assess(results, _steps(11, 40), REAL)
    assert ff.steps == {"level1": 11, "prior": 40}
    assert (ff.real_isc, ff.real_fid, ff.uniform_bpd) == (8.5, 3.0, 8.0)
    assert len(ff.warnings) == 3
    assert "IS 1.12 against 8.50 for real images" in ff.warnings[0]
    assert "FID 153.0 against 3.0" in ff.warnings[1]
    assert "7.40 bits/dim, near a uniform model's 8" in ff.warnings[2]
    assert "FAR FROM GOOD after 11 level1 steps, 40 prior steps" in ff.summary()
    assert msp.warnings == []
    assert msp.summary().startswith("MSP: close to the reference values")
    page = quality_html([ff, msp], REAL)
    assert f"Reference: {REAL}" in page and "8.50" in page and "3.00" in page
    assert "uniform model" in page and "8.000 bits/dim" in page
    assert page.count('class="warning"') == 2  # FF's warning and the advice; none for MSP
    assert "11 level1, 40 prior" in page


def test_the_latest_row_of_a_metric_counts(tmp_path):
    results = _results(
        tmp_path,
        [
            {"model": REAL, "metric": "isc", "value": 8.0},
            {"model": "tiny_ff", "metric": "isc", "value": 1.0},
            {"model": "tiny_ff", "metric": "isc", "value": 7.0},  # recomputed after more training
        ],
    )
    ff, _ = assess(results, _steps(5, 5), REAL)
    assert ff.isc == 7.0 and ff.warnings == []


def test_is_is_judged_by_how_far_above_one_it_is(tmp_path):
    # A weak classifier gives real images an IS of 1.44; samples at 1.008 are at its floor.
    results = _results(
        tmp_path,
        [
            {"model": REAL, "metric": "isc", "value": 1.44},
            {"model": "tiny_ff", "metric": "isc", "value": 1.008},
            {"model": "tiny_msp", "metric": "isc", "value": 1.30},
            {"model": "tiny_ff", "metric": "nll_bpd", "value": 8.3},
        ],
    )
    ff, msp = assess(results, _steps(5, 5), REAL)
    assert "IS 1.01 against 1.44" in ff.warnings[0]
    assert "8.30 bits/dim, no better than a uniform model's 8" in ff.warnings[1]
    assert msp.warnings == []


def test_plan_sizes_follow_the_budget():
    short, long = make_plan(2, "shapes"), make_plan(30, "shapes")
    assert short.train_images < long.train_images
    assert short.per_class < long.per_class
    assert short.seconds == 120.0
