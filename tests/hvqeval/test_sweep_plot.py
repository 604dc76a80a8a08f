"""``hvqeval sweep temperature`` (resumable) and ``hvqeval plot`` (figures drawing the rows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from analysis.curves import predictability_points, sweep_points, training_log
from analysis.plots import predictability_curve, temperature_curve, training_curves
from analysis.results import load_results
from hvqeval.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import build_tiny_run, one_thread  # noqa: E402,F401

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # 16x16 images: the size of the seeded domain classifier of conftest.py.
    return build_tiny_run(tmp_path_factory.getbasetemp(), "tiny_ff", 16)


def _sweep(run, out, results, weights, values):
    return _cli(
        "sweep",
        "temperature",
        "--run",
        run,
        "--values",
        values,
        "--classes",
        "0-1",
        "--per-class",
        2,
        "--reference",
        "shapes:val:10",
        "--extractor",
        "domain",
        "--weights",
        weights,
        "--splits",
        2,
        "--out",
        out,
        "--results",
        results,
        "--device",
        "cpu",
        "--json",
    )


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def _line_data(ax) -> dict[str, np.ndarray]:
    """Labelled data lines of an axis (error-bar caps are unlabelled ``_child`` lines)."""
    return {
        line.get_label(): line.get_xydata()
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_sweep_resumes_and_plot_draws_its_rows(run, tmp_path, domain_weights):
    out, results = tmp_path / "sweep", tmp_path / "results.jsonl"
    first = _sweep(run, out, results, domain_weights, "0.8")
    assert first.exit_code == 0, first.output
    # Adding a value computes only that value; the finished one is skipped.
    second = _sweep(run, out, results, domain_weights, "0.8,1.0")
    assert second.exit_code == 0, second.output
    assert "T=0.8: rows already in" in second.stderr and "--temperature 0.8 " not in second.stderr
    assert (
        "--temperature 1.0 " in second.stderr and "1 value(s) computed, 1 already" in second.stderr
    )
    rows = json.loads(second.stdout)
    assert sorted((r["metric"], r["extra"]["temperature"]) for r in rows) == [
        ("fid", 0.8),
        ("fid", 1.0),
        ("isc", 0.8),
        ("isc", 1.0),
    ]
    for row in rows:  # each row's samples were drawn at its temperature
        manifest = json.loads((Path(row["sample_set"]) / "manifest.json").read_text())
        assert manifest["temperature"] == row["extra"]["temperature"]
        assert row["model"] == f"tiny_ff T={row['extra']['temperature']:g}"

    # A rerun of the whole sweep does no work: no command runs, no file changes.
    stored, files = results.read_bytes(), _mtimes(out)
    third = _sweep(run, out, results, domain_weights, "0.8,1.0")
    assert third.exit_code == 0, third.output
    assert "$ hvqeval" not in third.stderr and "0 value(s) computed, 2 already" in third.stderr
    assert results.read_bytes() == stored and _mtimes(out) == files
    assert sorted(map(json.dumps, json.loads(third.stdout))) == sorted(map(json.dumps, rows))

    # The figure's points are the stored rows.
    figure = tmp_path / "temperature.png"
    shown = _cli("plot", "temperature", "--results", results, "--out", figure, "--json")
    assert shown.exit_code == 0, shown.output
    assert figure.read_bytes().startswith(PNG_MAGIC) and figure.stat().st_size > 5000
    points = json.loads(shown.stdout)
    expected = {(r["metric"], r["extra"]["temperature"]): r["value"] for r in rows}
    assert {(p["metric"], p["temperature"]): p["value"] for p in points} == expected
    fig = temperature_curve(sweep_points(load_results(results)))
    for ax, metric in zip(fig.axes, ("fid", "isc")):
        (xy,) = _line_data(ax).values()
        assert xy.tolist() == [[t, expected[(metric, t)]] for t in (0.8, 1.0)]


def test_sweep_refuses_other_settings_in_the_same_folder_and_bad_values(run, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"run": str(run), "per_class": 99}))
    res = _cli(
        "sweep",
        "temperature",
        "--run",
        run,
        "--values",
        "0.9",
        "--out",
        out,
        "--metrics",
        "isc",
        "--results",
        tmp_path / "r.jsonl",
    )
    assert res.exit_code == 1 and "holds a sweep made with other settings" in res.output
    for values, message in (
        ("0.9,abc", "comma-separated numbers"),
        ("0.9,-1", "positive"),
        ("1,1.0", "twice"),
    ):
        res = _cli(
            "sweep", "temperature", "--run", run, "--values", values, "--out", tmp_path / "o"
        )
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    res = _cli(
        "sweep",
        "temperature",
        "--run",
        run,
        "--values",
        "1",
        "--metrics",
        "isc,fid",
        "--out",
        tmp_path / "o2",
    )
    assert res.exit_code == 1 and "FID needs a reference" in res.output
    assert not (tmp_path / "o2").exists()  # nothing written before the check


def test_training_curves_plot_the_logged_values(run, tmp_path):
    figure = tmp_path / "training.svg"
    res = _cli("plot", "training", "--run", run, "--out", figure)
    assert res.exit_code == 0, res.output
    assert b"<svg" in figure.read_bytes()[:1000]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    fig = training_curves({"tiny": training_log(run)})
    panels = {ax.get_ylabel().split(" ")[0]: _line_data(ax) for ax in fig.axes}
    assert set(panels) == {"training", "bits/dim", "codebook"}  # loss, bpd, usage (VQ level)
    for stage in ("level1", "prior"):
        records = [r for r in log if r["stage"] == stage]
        assert panels["bits/dim"][stage].tolist() == [[r["step"], r["bpd"]] for r in records]
        assert panels["training"][stage].tolist() == [[r["step"], r["loss"]] for r in records]
    assert list(panels["codebook"]) == ["level1"]  # the prior has no codebook


def test_predictability_curve_points_are_the_rows(tmp_path):
    results = tmp_path / "results.jsonl"
    specs = [
        ("feedforward, 2 layers", 3.1),
        ("feedforward, 8 layers", 3.9),
        ("msp 5x5, 2 layers", 2.5),
        ("msp 5x5, 8 layers", 3.0),
        ("msp 9x9, 2 layers", 2.2),
    ]
    rows = [
        {
            "metric": "code_nll_bpd",
            "value": v,
            "std": 0.01,
            "model": f"m{i}",
            "created_at": "t",
            "extra": {"run": f"runs/m{i}", "level": 1, "aux_decoder": aux},
        }
        for i, (aux, v) in enumerate(specs)
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    points = predictability_points(load_results(results))
    assert points[["kind", "layers", "mask_size"]].fillna(0).values.tolist() == [
        ["feedforward", 2, 0],
        ["feedforward", 8, 0],
        ["msp", 2, 5],
        ["msp", 2, 9],
        ["msp", 8, 5],
    ]
    left, right = predictability_curve(points).axes
    lines = _line_data(left)
    assert lines["feed-forward"].tolist() == [[2, 3.1], [8, 3.9]]
    assert lines["MSP 5x5"].tolist() == [[2, 2.5], [8, 3.0]]  # the most common mask size
    assert _line_data(right)["MSP, 2 layers"].tolist() == [[5, 2.5], [9, 2.2]]
    figure = tmp_path / "fig5.png"
    res = _cli("plot", "predictability", "--results", results, "--out", figure)
    assert res.exit_code == 0 and figure.read_bytes().startswith(PNG_MAGIC)


def test_reconstruction_figure_shows_each_levels_grid(tmp_path):
    run = build_tiny_run(tmp_path.parent, "imagenet256_msp", 16)  # two levels
    figure = tmp_path / "fig10.png"
    res = _cli(
        "plot",
        "reconstructions",
        "--run",
        run,
        "--images",
        "shapes:test",
        "--limit",
        2,
        "--samples-per-image",
        2,
        "--device",
        "cpu",
        "--out",
        figure,
        "--json",
    )
    assert res.exit_code == 0, res.output
    panels = json.loads(res.stdout)
    assert [p["level"] for p in panels] == [1, 2]
    assert figure.read_bytes().startswith(PNG_MAGIC)
    from hvqeval.reconstruction_figure import reconstruction_figure

    fig = reconstruction_figure(panels)
    for ax, panel in zip(fig.axes, panels):
        shown = np.asarray(ax.get_images()[0].get_array())
        assert np.array_equal(shown, np.asarray(Image.open(panel["grid"]).convert("RGB")))
        assert f"from level {panel['level']}" in ax.get_title()


def test_plot_errors_are_one_line(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"metric": "fid", "value": 1.0, "model": "m"}) + "\n")
    res = _cli("plot", "temperature", "--results", results, "--out", tmp_path / "t.png")
    assert res.exit_code == 1 and "no temperature-sweep rows" in res.output
    assert not (tmp_path / "t.png").exists()
    res = _cli("plot", "temperature", "--results", results, "--out", tmp_path / "t.jpg")
    assert res.exit_code == 2 and ".png or .svg" in res.output
    res = _cli("plot", "training", "--run", tmp_path, "--out", tmp_path / "t.png")
    assert res.exit_code == 1 and "no training log" in res.output


def test_sweep_points_keep_the_latest_row_per_value():
    def row(t, value, created):
        sweep = {"key": "k", "parameter": "temperature", "value": t, "model": "m"}
        return {
            "metric": "fid",
            "value": value,
            "std": None,
            "model": f"m T={t}",
            "n": 4,
            "sample_set": "s",
            "created_at": created,
            "extra": {"sweep": sweep},
        }

    frame = pd.DataFrame(
        [row(1.0, 5.0, "2026-01-02"), row(0.9, 4.0, "2026-01-01"), row(1.0, 6.0, "2026-01-01")]
    )
    points = sweep_points(frame)
    assert points[["temperature", "value"]].values.tolist() == [[0.9, 4.0], [1.0, 5.0]]
