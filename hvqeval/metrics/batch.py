"""Metric batches: many sample sets x references x metric settings from one TOML spec.

``hvqeval metrics batch spec.toml`` fills the results store for a whole Table 1 in one go::

    results = "results/results.jsonl"      # optional (the --results option wins)

    [defaults]                             # any `hvqeval metrics` setting, TOML-typed
    metrics = ["isc", "fid"]
    extractor = "inception-v3-compat"
    inception_weights = "weights/inception.pth"

    [[evaluation]]
    samples = ["samples/ff_t1.0", "samples/msp_t1.0"]   # a string or a list
    references = ["/data/imagenet:val"]                  # or reference = "..."
    metrics = ["isc", "fid", "kid"]                      # overrides [defaults]

Jobs are the cross product per ``[[evaluation]]``. Each job has a key (SHA-256 of both
inputs' content keys and every numeric setting); jobs whose key is already in the store are
skipped, so an interrupted batch resumes where it stopped. A progress bar counts jobs on
stderr, and the summary table covers every job of the spec, computed now or before.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli (a dependency there)
    import tomli as tomllib

from hvqeval.errors import HvqevalError
from hvqeval.metrics.evaluation import EvalSettings
from hvqeval.results import DEFAULT_RESULTS, ResultsStore

_SETTING_KEYS = {f.name for f in fields(EvalSettings)} - {"weights", "progress"}
_EXTRA_KEYS = {"inception_weights", "weights", "metrics"}
_EVALUATION_KEYS = {"samples", "references", "reference"}


@dataclass(frozen=True)
class Job:
    samples: str
    reference: str | None
    settings: EvalSettings


@dataclass(frozen=True)
class BatchPlan:
    spec: Path
    results: Path
    jobs: list[Job]


def _settings(values: dict[str, Any], where: str, base: Path) -> EvalSettings:
    unknown = sorted(set(values) - _SETTING_KEYS - _EXTRA_KEYS)
    if unknown:
        raise HvqevalError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(_SETTING_KEYS | _EXTRA_KEYS | _EVALUATION_KEYS))}"
        )
    data = dict(values)
    extractor = data.get("extractor", "inception-v3-compat")
    weights = data.pop("inception_weights", None) if extractor == "inception-v3-compat" else None
    weights = data.pop("weights", None) or weights
    data.pop("inception_weights", None)
    if weights is not None:
        weights = str((base / weights) if not Path(weights).is_absolute() else weights)
    if isinstance(data.get("metrics"), str):
        data["metrics"] = [m.strip() for m in data["metrics"].split(",")]
    if "metrics" in data:
        data["metrics"] = tuple(data["metrics"])
    try:
        return EvalSettings(weights=weights, progress=False, **data)
    except (TypeError, HvqevalError) as err:
        raise HvqevalError(f"{where}: {err}") from None


def _as_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise HvqevalError(f"{where}: {key} must be a string or a list of strings")


def load_spec(path: str | Path, results_override: str | None = None) -> BatchPlan:
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise HvqevalError(f"{path}: not valid TOML ({err})") from None
    unknown = sorted(set(spec) - {"results", "defaults", "evaluation"})
    if unknown:
        raise HvqevalError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
            "allowed: results, defaults, [[evaluation]]"
        )
    evaluations = spec.get("evaluation", [])
    if not isinstance(evaluations, list) or not evaluations:
        raise HvqevalError(
            f"{path}: add at least one [[evaluation]] table with samples and references"
        )
    defaults = spec.get("defaults", {})
    if not isinstance(defaults, dict):
        raise HvqevalError(f"{path}: [defaults] must be a table of settings")
    misplaced = sorted(set(defaults) & _EVALUATION_KEYS)
    if misplaced:
        raise HvqevalError(
            f"{path} [defaults]: {', '.join(misplaced)} belong in each [[evaluation]] table"
        )
    _settings(defaults, f"{path} [defaults]", Path("."))  # its own errors name [defaults]
    jobs: list[Job] = []
    for number, entry in enumerate(evaluations, start=1):
        where = f"{path} [[evaluation]] #{number}"
        if "samples" not in entry:
            raise HvqevalError(f"{where}: needs samples = [...]")
        samples = _as_list(entry["samples"], "samples", where)
        references: list[str | None] = [None]
        if "references" in entry or "reference" in entry:
            references = _as_list(
                entry.get("references", entry.get("reference")), "references", where
            )
        overrides = {k: v for k, v in entry.items() if k not in _EVALUATION_KEYS}
        settings = _settings({**defaults, **overrides}, where, Path("."))
        jobs += [Job(s, r, settings) for s in samples for r in references]
    results = Path(results_override or spec.get("results", DEFAULT_RESULTS))
    return BatchPlan(path, results, jobs)


def run_batch(plan: BatchPlan, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Run the plan's jobs not yet in the store; returns every row of every job of the plan."""
    import warnings

    from tqdm import tqdm

    from hvqeval.metrics.evaluation import evaluate, prepare

    store = ResultsStore(plan.results)
    done = store.job_keys()
    keys: list[str] = []
    computed = skipped = 0
    with tqdm(total=len(plan.jobs), desc="metric jobs", unit="job", disable=dry_run) as bar:
        for job in plan.jobs:
            prepared = prepare(job.samples, job.reference, job.settings)
            keys.append(prepared.key)
            label = f"{job.samples} vs {job.reference or '-'} [{','.join(job.settings.metrics)}]"
            if prepared.key in done:
                skipped += 1
                if dry_run:
                    click.echo(f"done     {label}")
            elif dry_run:
                click.echo(f"to do    {label}")
            else:
                bar.set_postfix_str(Path(job.samples).name)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    outcome = evaluate(job.samples, job.reference, job.settings, prepared)
                store.append(outcome.rows)
                done.add(prepared.key)
                computed += 1
                for note in outcome.warnings:
                    tqdm.write(f"Warning: {label}: {note}")
            bar.update(1)
    if not dry_run:
        click.echo(f"{computed} job(s) computed, {skipped} already in {plan.results}", err=True)
    wanted = set(keys)
    return [r for r in store.read() if (r.get("extra") or {}).get("job") in wanted]
