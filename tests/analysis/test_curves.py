"""Curves data (analysis.curves), the report section made from it; Table 1 leaves sweeps out."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from analysis.curves import training_log
from analysis.errors import ResultsError
from analysis.results import load_results, table1
from analysis.sections import curves_section


def _row(metric, value, model, extra=None, std=None):
    return {
        "metric": metric,
        "value": value,
        "std": std,
        "model": model,
        "n": 100,
        "splits": 10,
        "feature_extractor": "domain:shapes",
        "reference": "shapes:val",
        "created_at": "2026-01-01",
        "extra": extra or {},
    }


def _sweep(t):
    return {
        "sweep": {"key": "k1", "parameter": "temperature", "value": t, "model": "ff"},
        "temperature": t,
    }


@pytest.fixture
def results(tmp_path):
    rows = [_row("fid", 30.0, "ff"), _row("isc", 5.0, "ff", std=0.2)]
    rows += [_row("fid", 40.0 - 10 * t, f"ff T={t:g}", _sweep(t)) for t in (0.9, 1.0)]
    rows += [_row("isc", 4.0 + t, f"ff T={t:g}", _sweep(t), std=0.1) for t in (0.9, 1.0)]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_results(path)


def test_table1_leaves_sweep_rows_out_with_a_note(results):
    table, notes = table1(results)
    assert table["model"].tolist() == ["ff"] and table["fid"].tolist() == [30.0]
    assert any("4 temperature-sweep row(s) left out" in n for n in notes)


def test_curves_section_has_the_points_and_both_figures(results, tmp_path):
    log = tmp_path / "log.jsonl"
    records = [
        {"stage": "level1", "step": s, "loss": 5.0 - s, "bpd": 7.0 - s, "usage": 0.5}
        for s in (10, 20)
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    section = curves_section(results, {"ff": training_log(tmp_path)})
    assert section.table[["temperature", "metric", "value"]].values.tolist() == [
        [0.9, "fid", 31.0],
        [1.0, "fid", 30.0],
        [0.9, "isc", 4.9],
        [1.0, "isc", 5.0],
    ]
    assert [f.title.split(":")[0] for f in section.figures] == [
        "Sample quality against temperature",
        "Training curves",
    ]
    for figure in section.figures:
        assert base64.b64decode(figure.png_base64).startswith(b"\x89PNG")
    # No sweep rows: a note instead of the figure, the training curves still drawn.
    plain = curves_section(
        results[results["extra"].map(lambda e: "sweep" not in e)], {"ff": training_log(tmp_path)}
    )
    assert len(plain.figures) == 1 and "no temperature-sweep rows" in plain.notes[0]


def test_training_log_keeps_the_last_record_of_a_resumed_step_and_skips_a_torn_line(tmp_path):
    lines = [
        {"stage": "prior", "step": 10, "loss": 3.0},
        {"stage": "prior", "step": 20, "loss": 2.0},
        {"stage": "prior", "step": 20, "loss": 1.5},
    ]  # resumed from step 10, step 20 logged again
    (tmp_path / "log.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines) + '{"stage": "pr'
    )
    with pytest.warns(UserWarning, match="incomplete"):
        log = training_log(tmp_path)
    assert log[["step", "loss"]].values.tolist() == [[10, 3.0], [20, 1.5]]
    with pytest.raises(ResultsError, match="no training log"):
        training_log(tmp_path / "missing")
    assert isinstance(log, pd.DataFrame)
