"""Parameter sweeps over existing commands: ``hvqeval sweep temperature`` (paper Section 7.3).

The paper samples at temperatures just below 1 (0.97-0.99) because sharper softmaxes trade
diversity for fidelity; the sweep measures that trade-off. For every value T it runs, in this
process and exactly as a user would type them (the demo's way)::

    hvqeval sample  --run R --temperature T --model "<label> T=<T>" --out <out>/T<T>  ...
    hvqeval metrics --samples <out>/T<T> --reference REF --results <out>/rows/T<T>.jsonl ...

then copies the metric rows into the results store with ``extra.sweep`` =
``{"key", "parameter": "temperature", "value": T, "model": <label>, "run": R}`` and
``extra.temperature`` = T, so ``analysis.curves.sweep_points`` can draw FID/IS against T.

Resuming: a value is finished when the results store holds rows with its sweep key and value;
finished values are skipped without loading anything. An unfinished value reruns both
commands, and ``hvqeval sample`` itself keeps finished batches, so a killed sweep loses at most
one batch. The sweep's settings are saved in ``<out>/sweep.json``; rerunning into the same
folder with other settings is an error (adding values is not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hvqeval.errors import HvqevalError

SETTINGS_FILE = "sweep.json"
PARAMETERS = ("temperature",)


class SweepError(HvqevalError):
    """The sweep's values or folder cannot be used as given."""


def parse_values(text: str) -> list[float]:
    """``"0.9,0.95,1.0"`` -> [0.9, 0.95, 1.0]; positive, finite and distinct, in the given order."""
    values: list[float] = []
    for item in (t.strip() for t in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise SweepError(
                f"--values must be comma-separated numbers like 0.9,0.95,1.0; got {item!r}"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise SweepError(f"--values must be positive temperatures; got {item!r}")
        if value in values:
            raise SweepError(f"--values lists {item} twice; give each temperature once")
        values.append(value)
    return values


def value_name(value: float) -> str:
    """Folder name of a value's sample set: 0.95 -> ``T0.95``, 1.0 -> ``T1``."""
    return f"T{value:g}"


@dataclass(frozen=True)
class SweepSettings:
    """Everything but the values that changes a sweep's images or numbers."""

    run: str
    classes: str = "all"
    per_class: int = 10
    seed: int = 0
    sampler: str = "cached"
    batch_size: int = 16
    reference: str | None = None
    metrics: str = "isc,fid"
    extractor: str = "inception-v3-compat"
    weights: str | None = None
    splits: int = 10
    model: str | None = None  # label of the run (default: the card name)
    sample_args: tuple[str, ...] = field(default=())  # speed-only options: --device, --precision
    metric_args: tuple[str, ...] = field(default=())  # speed-only options: --device, --cache-dir

    def key(self) -> str:
        """Identity of the sweep in the results store (speed-only options excluded)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("sample_args", "metric_args")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepOutcome:
    out: Path
    key: str
    label: str
    computed: list[float]
    skipped: list[float]
    rows: list[dict[str, Any]]  # every stored row of the sweep's values (finished before or now)


def _check_folder(out: Path, settings: SweepSettings) -> None:
    """Save the settings on the first run; refuse a folder holding a sweep made differently."""
    path = out / SETTINGS_FILE
    current = {k: v for k, v in asdict(settings).items() if k not in ("sample_args", "metric_args")}
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in current if stored.get(k) != current[k])
        if changed:
            raise SweepError(
                f"{out} holds a sweep made with other settings ({', '.join(changed)}); "
                "use another --out folder or the same options"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps(current, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def stored_rows(results: Path, key: str) -> list[dict[str, Any]]:
    """Rows of the results store that belong to the sweep ``key``."""
    from hvqeval.results import ResultsStore

    return [
        r
        for r in ResultsStore(results).read()
        if isinstance(r.get("extra"), dict)
        and isinstance(r["extra"].get("sweep"), dict)
        and r["extra"]["sweep"].get("key") == key
    ]


def run_cli_in_process(args: list[str], echo: Callable[[str], None]) -> Any:
    """Run one ``hvqeval`` command in this process (as ``hvqeval.demo`` does); errors propagate.

    The command's own stdout goes to stderr: the sweep's stdout carries only its result.
    """
    from hvqeval.cli import cli

    echo("$ hvqeval " + " ".join(shlex.quote(a) for a in args))
    with contextlib.redirect_stdout(sys.stderr):
        return cli.main(args=args, prog_name="hvqeval", standalone_mode=False)


def temperature_sweep(
    settings: SweepSettings,
    values: list[float],
    out: str | os.PathLike,
    results: str | os.PathLike,
    echo: Callable[[str], None] = print,
    run_cli: Callable[[list[str]], Any] | None = None,
) -> SweepOutcome:
    """Sample and evaluate ``settings.run`` at each temperature of ``values`` (module docstring)."""
    from hvqeval.results import ResultsStore
    from hvqeval.run_folder import check_run

    if not values:
        raise SweepError("--values needs at least one temperature")
    if settings.reference is None and "fid" in settings.metrics.split(","):
        raise SweepError(
            "FID needs a reference: pass --reference (e.g. shapes:val) or --metrics isc"
        )
    card = check_run(settings.run, need_prior=True)
    label = settings.model or card.name
    out, results = Path(out), Path(results)
    _check_folder(out, settings)
    key = settings.key()
    run_cli = run_cli or (lambda args: run_cli_in_process(args, echo))
    finished = {r["extra"]["sweep"]["value"] for r in stored_rows(results, key)}
    computed, skipped = [], []
    for value in values:
        if value in finished:
            echo(f"[sweep] T={value:g}: rows already in {results}, skipped")
            skipped.append(value)
            continue
        samples = out / value_name(value)
        run_cli(
            [
                "sample",
                "--run",
                str(settings.run),
                "--classes",
                settings.classes,
                "--per-class",
                str(settings.per_class),
                "--temperature",
                f"{value!r}",
                "--seed",
                str(settings.seed),
                "--sampler",
                settings.sampler,
                "--batch-size",
                str(settings.batch_size),
                "--model",
                f"{label} T={value:g}",
                "--out",
                str(samples),
                *settings.sample_args,
            ]
        )
        rows_file = out / "rows" / f"{value_name(value)}.jsonl"
        rows_file.parent.mkdir(parents=True, exist_ok=True)
        rows_file.unlink(missing_ok=True)  # rows of an interrupted earlier attempt
        metric_args = [
            "metrics",
            "--samples",
            str(samples),
            "--metrics",
            settings.metrics,
            "--extractor",
            settings.extractor,
            "--splits",
            str(settings.splits),
            "--results",
            str(rows_file),
            *settings.metric_args,
        ]
        if settings.reference is not None:
            metric_args += ["--reference", settings.reference]
        if settings.weights is not None:
            flag = (
                "--inception-weights"
                if settings.extractor == "inception-v3-compat"
                else "--weights"
            )
            metric_args += [flag, settings.weights]
        run_cli(metric_args)
        sweep = {
            "key": key,
            "parameter": "temperature",
            "value": value,
            "model": label,
            "run": os.fspath(settings.run),
        }
        rows = [
            {**r, "extra": {**(r.get("extra") or {}), "temperature": value, "sweep": sweep}}
            for r in ResultsStore(rows_file).read()
        ]
        ResultsStore(results).append(rows)  # one locked write: the value is finished or not at all
        computed.append(value)
    wanted = set(values)
    rows = [r for r in stored_rows(results, key) if r["extra"]["sweep"]["value"] in wanted]
    return SweepOutcome(out, key, label, computed, skipped, rows)
