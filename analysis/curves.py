"""The data behind the figures: temperature sweeps, training curves, code predictability (Fig. 5).

Reads files only (the results store, runs' ``log.jsonl``); each function returns a DataFrame
with documented columns, and ``analysis.plots`` draws them.

:func:`sweep_points` -- one row per (model, sweep, temperature, metric), from results rows that
``hvqeval sweep`` tagged with ``extra.sweep``:

=============== =============================================================
model           the swept run's label (``extra.sweep.model``)
sweep           sweep key (settings other than the value; ``extra.sweep.key``)
temperature     the swept value
metric          ``isc``, ``fid``, ... as stored
value, std, n   the stored number, its std (IS: over splits) and sample count
sample_set      folder of the samples behind it
=============== =============================================================

:func:`training_log` -- one row per logged step of a run: ``stage``, ``step`` and every logged
metric (``loss``, ``bpd``, ``usage`` for VQ levels, ...).

:func:`predictability_points` -- one row per ``code_nll_bpd`` result (``hvqeval
predictability``): ``model``, ``run``, ``level``, ``aux_decoder``, ``kind`` (feedforward/msp),
``layers``, ``mask_size`` (MSP only), ``value``, ``std``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ResultsError

SWEEP_COLUMNS = ["model", "sweep", "temperature", "metric", "value", "std", "n", "sample_set"]
PREDICTABILITY_COLUMNS = [
    "model",
    "run",
    "level",
    "aux_decoder",
    "kind",
    "layers",
    "mask_size",
    "value",
    "std",
]
_AUX = re.compile(r"^(?P<kind>feedforward|msp)(?: (?P<mask>\d+)x\d+)?, (?P<layers>\d+) layers$")


def _extra(row: pd.Series) -> dict:
    extra = row.get("extra")
    return extra if isinstance(extra, dict) else {}


def _latest(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keep the latest row (``created_at``, then file order) of each group of ``keys``."""
    if "created_at" in frame:
        frame = frame.sort_values("created_at", kind="stable", na_position="first")
    return frame.drop_duplicates(keys, keep="last")


def sweep_points(
    results: pd.DataFrame, metrics: list[str] | None = None, models: list[str] | None = None
) -> pd.DataFrame:
    """Temperature-sweep rows of the results store, sorted by model and temperature."""
    rows = []
    for _, row in results.iterrows():
        sweep = _extra(row).get("sweep")
        if not isinstance(sweep, dict) or sweep.get("parameter") != "temperature":
            continue
        rows.append(
            {
                "model": sweep.get("model"),
                "sweep": sweep.get("key"),
                "temperature": float(sweep["value"]),
                "metric": row["metric"],
                "value": row["value"],
                "std": row.get("std") if pd.notna(row.get("std")) else np.nan,
                "n": row.get("n"),
                "sample_set": row.get("sample_set"),
                "created_at": row.get("created_at"),
            }
        )
    frame = pd.DataFrame(rows, columns=SWEEP_COLUMNS + ["created_at"])
    if frame.empty:
        raise ResultsError(
            "the results store has no temperature-sweep rows; run `hvqeval sweep temperature` first"
        )
    if models:
        missing = sorted(set(models) - set(frame["model"]))
        if missing:
            raise ResultsError(
                f"model {missing[0]!r} has no sweep rows; swept: "
                + ", ".join(sorted(set(frame["model"])))
            )
        frame = frame[frame["model"].isin(models)]
    if metrics:
        frame = frame[frame["metric"].isin(metrics)]
        if frame.empty:
            raise ResultsError(f"no sweep rows of metric(s) {', '.join(metrics)}")
    frame = _latest(frame, ["model", "sweep", "temperature", "metric"])
    return frame.sort_values(["model", "sweep", "metric", "temperature"], kind="stable")[
        SWEEP_COLUMNS
    ].reset_index(drop=True)


def read_jsonl(path: Path) -> list[dict]:
    """Objects of a JSON-lines file; a torn last line (crash while writing) is skipped, warned."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: line {number} is incomplete and was skipped", stacklevel=2)
                continue
            raise ResultsError(
                f"{path}: line {number} is not JSON; remove or repair that line"
            ) from None
    return out


def training_log(run: str | Path) -> pd.DataFrame:
    """A run's ``log.jsonl`` (``run`` is the run folder or the file): one row per logged step."""
    path = Path(run)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise ResultsError(f"{path}: no training log; train the run with `hvqeval train` first")
    frame = pd.DataFrame(read_jsonl(path))
    if frame.empty or not {"stage", "step"} <= set(frame.columns):
        raise ResultsError(f"{path}: holds no logged training steps")
    # A resumed stage logs its steps again from the checkpoint: keep the last record of each step.
    frame = frame.drop_duplicates(["stage", "step"], keep="last")
    return frame.sort_values(["stage", "step"], kind="stable").reset_index(drop=True)


def predictability_points(results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5's points: validation NLL of a small prior on each run's codes (bits per code dim)."""
    rows = []
    for _, row in results[results["metric"] == "code_nll_bpd"].iterrows():
        extra = _extra(row)
        aux = str(extra.get("aux_decoder", ""))
        match = _AUX.match(aux)
        rows.append(
            {
                "model": row["model"],
                "run": extra.get("run"),
                "level": extra.get("level"),
                "aux_decoder": aux,
                "kind": match["kind"] if match else "",
                "layers": int(match["layers"]) if match else np.nan,
                "mask_size": int(match["mask"]) if match and match["mask"] else np.nan,
                "value": row["value"],
                "std": row.get("std"),
                "created_at": row.get("created_at"),
            }
        )
    frame = pd.DataFrame(rows, columns=PREDICTABILITY_COLUMNS + ["created_at"])
    if frame.empty:
        raise ResultsError(
            "the results store has no code predictability rows; run `hvqeval predictability` first"
        )
    frame = _latest(frame, ["run", "level"])
    return frame.sort_values(["kind", "layers", "mask_size"], kind="stable")[
        PREDICTABILITY_COLUMNS
    ].reset_index(drop=True)
