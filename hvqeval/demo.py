"""The whole pipeline in one command (``hvqeval demo``): train, sample, evaluate, study.

On a 2-core CPU with no network the demo trains two small two-level hierarchies (a
feed-forward and an MSP auxiliary decoder, paper Sections 4.1 and 4.2) on the built-in
``shapes`` data, samples every class from both (Algorithm 4), draws
sampled reconstructions of held-out images, computes IS/FID with the domain classifier,
the joint NLL bound (Appendix F) and pixel-space nearest neighbours (Appendix H), writes
``report.html``, and creates a rating study and two pairwise studies (Section 7.3).

Each step is one ``hvqeval`` command run in-process, so the demo is exactly what a user
would type; the commands it ran are listed in the report. Every command is itself
resumable or atomic, and ``steps.json`` records the finished steps, so rerunning the demo
reuses what is finished and Ctrl-C leaves nothing half-written. The plan (steps per stage,
samples per class) is fixed on the first run from the ``--minutes`` budget and a short
timing of the first training steps, and saved in ``plan.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hvqeval.errors import HvqevalError

CARDS = {"ff": "tiny_ff", "msp": "tiny_msp"}
LABELS = {"ff": "FF", "msp": "MSP"}
# The tiny cards at half width and batch 16, on 16x16 images with 8x8 level-1 codes (a factor
# of 2, as the paper's level 1 at 256x256). Measured on 2 cores: a 32x32 level-1 step costs
# 3x a 16x16 one, and a prior on 16x16 codes 5x one on 8x8 codes; at 32x32 the budget bought
# ~250 steps per stage and the samples were colour blobs, at 16x16 it buys ~4x more and the
# prior learns the class layouts (bits per code with the true class 1.37 against 2.39 with
# another class after 3,000 prior steps). With few steps a higher learning rate pays (300
# level-1 steps: 5.36 bits/dim at 3e-3 against 5.96 at the card's 1e-3). 8 MSP masks per
# image cover about a quarter of a 16x16 image, as the card's 30 do at 32x32. All of it is
# recorded in each run's config.json.
IMAGE_SIZE = 16
DEMO_CARD_SETTINGS = {
    "ff": [f"model.image_size={IMAGE_SIZE}", "level.0.codes.resolution=8",
           "level.0.encoder.hidden=32", "level.0.encoder.bottleneck=16", "level.0.aux_decoder.hidden=32",
           "level.0.aux_decoder.bottleneck=16", "level.0.modulator.hidden=32", "level.0.modulator.bottleneck=16",
           "level.0.training.batch_size=16", "prior.training.batch_size=16",
           "level.0.training.learning_rate=3e-3", "prior.training.learning_rate=2e-3"],
}
DEMO_CARD_SETTINGS["msp"] = DEMO_CARD_SETTINGS["ff"] + [
    "level.0.aux_decoder.teacher.hidden=32", "level.0.aux_decoder.teacher.bottleneck=16",
    "level.0.aux_decoder.masks_per_image=8"]
DATASET_CARD_SETTINGS = {"shapes": []}  # card overrides per training dataset
NUM_CLASSES = {"shapes": 10}
PLAN_VERSION = 3
# Step costs relative to a level-1 step of the demo's tiny_ff (measured: 10.5 FF, 9.1 MSP and
# 17 prior steps/s on 2 cores): the MSP level also trains a teacher; the prior works on 8x8
# codes instead of 16x16 pixels. The prior gets PRIOR_STEPS_PER_LEVEL_STEP times the steps of
# a level: it has to learn each class's global layout, which takes it the longest.
MSP_COST = 1.15
PRIOR_COST = 0.6
PRIOR_STEPS_PER_LEVEL_STEP = 4
# Measured: 35 s for everything but training in a 10-minute run; the rest covers planning
# and the timing's error (a 15-minute run with 60 s here took 16 minutes).
FIXED_SECONDS = 90.0
MIN_STEPS = 10  # a --minutes 1 run is a smoke run: every step works, the models learn little
# Training images per split: the prior's stage encodes the whole training split once
# (Algorithm 1), so the demo uses the first 4,000 (400 per class) instead of 50,000.
TRAIN_ARGS = ["--workers", "0", "--limit", "4000"]


class DemoError(HvqevalError):
    """The demo cannot run with these options (or its folder holds another plan)."""


@dataclass(frozen=True)
class DemoPlan:
    """Sizes fixed on the first run so reruns continue the same work."""

    version: int
    data: str
    minutes: float
    level_steps: int
    prior_steps: int
    classifier_steps: int
    per_class: int
    study_per_class: int
    evaluation_images: int  # reference images for FID, held-out images for the NLL
    seconds_per_level_step: float
    seconds_per_prior_step: float


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Demo:
    """Runs the demo's steps in order, skipping the finished ones."""

    def __init__(self, out: Path, minutes: float, data: str, database_url: str | None,
                 echo: Callable[[str], None] = print):
        if data not in DATASET_CARD_SETTINGS:
            raise DemoError(f"--data must be one of {', '.join(DATASET_CARD_SETTINGS)}, got {data!r}")
        if minutes < 1:
            raise DemoError(f"--minutes must be at least 1 (the demo needs time to train), got {minutes:g}")
        self.out = out
        self.minutes = minutes
        self.data = data
        self.echo = echo
        self.out.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{(self.out / 'study.sqlite3').resolve()}"
        self.steps_path = self.out / "steps.json"
        self.steps: dict[str, Any] = json.loads(self.steps_path.read_text()) if self.steps_path.exists() else {}
        self.commands: list[str] = []
        self.started = time.monotonic()

    # ------------------------------------------------------------------ plumbing
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def run_cli(self, args: list[str]) -> Any:
        """Run one ``hvqeval`` command in this process; user errors propagate unchanged."""
        from hvqeval.cli import cli

        line = "hvqeval " + " ".join(shlex.quote(a) for a in args)
        self.commands.append(line)
        self.echo(f"$ {line}")
        return cli.main(args=args, prog_name="hvqeval", standalone_mode=False)

    def step(self, name: str, func: Callable[[], Any]) -> None:
        if name in self.steps:
            self.echo(f"[demo] {name}: done earlier, reused")
            self.commands.extend(self.steps[name].get("commands", []))
            return
        self.echo(f"[demo] {name} ...")
        start = time.monotonic()
        first = len(self.commands)
        func()
        self.steps[name] = {"seconds": round(time.monotonic() - start, 1), "finished_at": _now(),
                            "commands": self.commands[first:]}
        _atomic_write_text(self.steps_path, json.dumps(self.steps, indent=1))

    def card_args(self, key: str) -> list[str]:
        args = ["--config", CARDS[key]]
        for setting in DEMO_CARD_SETTINGS[key] + DATASET_CARD_SETTINGS[self.data]:
            args += ["--set", setting]
        return args

    @property
    def dataset_spec(self) -> str:
        return self.data

    # ------------------------------------------------------------------ plan
    def make_plan(self) -> DemoPlan:
        plan_path = self.path("plan.json")
        if plan_path.exists():
            stored = json.loads(plan_path.read_text())
            if stored.get("version") != PLAN_VERSION:
                raise DemoError(f"{plan_path} was written by another version of the demo; "
                                "use another --out folder or delete that one")
            plan = DemoPlan(**stored)
            if plan.data != self.data:
                raise DemoError(
                    f"{self.out} holds a demo on {plan.data!r}; use another --out for --data {self.data}"
                )
            if plan.minutes != self.minutes:
                self.echo(f"[demo] keeping the plan of the first run ({plan.minutes:g} minutes)")
            return plan
        # Time a few steps of the most expensive stage (level 1) and of the prior; these
        # steps are part of the real runs (training resumes from them).
        sec_level = self._time_stage("ff", ["--level", "1"], 12)
        budget = self.minutes * 60.0
        # Everything but training (classifier, sampling, metrics, studies, report) takes
        # roughly FIXED_SECONDS; training gets the rest. One level step of each hierarchy
        # and the prior steps that go with it cost about
        # (1 + MSP_COST + 2 * PRIOR_STEPS_PER_LEVEL_STEP * PRIOR_COST) level-1 FF steps.
        train_budget = max(budget - FIXED_SECONDS, 0.3 * budget)
        per_level_step = 1 + MSP_COST + 2 * PRIOR_STEPS_PER_LEVEL_STEP * PRIOR_COST
        level_steps = int(train_budget / (sec_level * per_level_step))
        sec_prior = PRIOR_COST * sec_level
        level_steps = max(MIN_STEPS, min(level_steps, 3000))
        prior_steps = PRIOR_STEPS_PER_LEVEL_STEP * level_steps
        per_class = 4 if self.minutes < 3 else 10 if self.minutes < 10 else 20
        evaluation_images = 1000 if self.minutes < 3 else 5000
        classifier_steps = max(60, min(int(20 * self.minutes), 600))  # 300 reach ~100% accuracy
        plan = DemoPlan(PLAN_VERSION, self.data, self.minutes, level_steps, prior_steps, classifier_steps, per_class,
                        study_per_class=min(per_class, 10), evaluation_images=evaluation_images, seconds_per_level_step=round(sec_level, 3),
                        seconds_per_prior_step=round(sec_prior, 3))
        _atomic_write_text(plan_path, json.dumps(asdict(plan), indent=1))
        self.echo(f"[demo] plan: {level_steps} steps per level, {prior_steps} prior steps, "
                  f"{per_class} samples per class")
        return plan

    def _time_stage(self, key: str, stage: list[str], steps: int) -> float:
        """Seconds per training step: two timed runs of 2 and ``steps`` steps, so the fixed cost
        of a command (building the model, loading and saving the checkpoint) cancels out."""
        run = self.path("runs", CARDS[key])
        self.run_cli(["train", *self.card_args(key), "--out", str(run), *stage, "--steps", "1", *TRAIN_ARGS])
        seconds = []
        for target in (3, 3 + steps):
            start = time.monotonic()
            self.run_cli(["train", "--out", str(run), *stage, "--steps", str(target), *TRAIN_ARGS])
            seconds.append(time.monotonic() - start)
        return max(seconds[1] - seconds[0], 0.1 * seconds[1]) / (steps - 2)

    # ------------------------------------------------------------------ steps
    def run(self) -> dict[str, Any]:
        plan = self.make_plan()
        weights = self.path("weights", f"{self.data}_classifier.pt")
        results = self.path("results", "results.jsonl")
        results.parent.mkdir(parents=True, exist_ok=True)
        self.step("classifier", lambda: self.run_cli([
            "features", "train", "--data", self.data, "--out", str(weights), "--steps", str(plan.classifier_steps),
            "--image-size", str(IMAGE_SIZE), "--device", "cpu"]))
        for key in CARDS:
            run = self.path("runs", CARDS[key])
            self.step(f"train_{key}", lambda run=run, key=key: self._train(key, run, plan))
        for key in CARDS:
            run = self.path("runs", CARDS[key])
            samples = self.path("samples", CARDS[key])
            self.step(f"sample_{key}", lambda run=run, samples=samples: self.run_cli([
                "sample", "--run", str(run), "--classes", "all", "--per-class", str(plan.per_class),
                "--temperature", "1.0", "--seed", "0", "--sampler", "cached", "--batch-size", "60",
                "--out", str(samples), "--device", "cpu"]))
            self.step(f"reconstruct_{key}", lambda run=run, key=key: self.run_cli([
                "reconstruct", "--run", str(run), "--images", f"{self.dataset_spec}:test", "--limit", "5",
                "--samples-per-image", "3", "--seed", "0", "--out", str(self.path("reconstructions", CARDS[key])),
                "--device", "cpu"]))
            self.step(f"metrics_{key}", lambda samples=samples: self.run_cli([
                "metrics", "--samples", str(samples), "--reference", f"{self.dataset_spec}:val:{plan.evaluation_images}",
                "--metrics", "isc,fid", "--extractor", "domain", "--weights", str(weights),
                "--splits", "10", "--device", "cpu", "--cache-dir", str(self.path("cache")),
                "--results", str(results)]))
            self.step(f"nll_{key}", lambda run=run: self.run_cli([
                "nll", "--run", str(run), "--data", self.dataset_spec, "--split", "test", "--limit", str(plan.evaluation_images // 5),
                "--device", "cpu", "--results", str(results)]))
            self.step(f"neighbours_{key}", lambda samples=samples, key=key: self.run_cli([
                "neighbours", "--samples", str(samples), "--dataset", f"{self.dataset_spec}:train:4000",
                "--space", "pixel", "--k", "8", "--limit", "6", "--device", "cpu",
                "--cache-dir", str(self.path("cache")), "--out", str(self.path("neighbours", CARDS[key]))]))
        studies = self.step_studies(plan)
        self.step("report", lambda: self.write_report(plan, results))
        elapsed = time.monotonic() - self.started
        return {"out": str(self.out), "report": str(self.path("report.html")), "studies": studies,
                "database_url": self.database_url, "plan": asdict(plan), "seconds_this_run": round(elapsed, 1),
                "serve_command": self.serve_command()}

    def _train(self, key: str, run: Path, plan: DemoPlan) -> None:
        base = [*self.card_args(key)] if not (run / "config.json").exists() else []
        self.run_cli(["train", *base, "--out", str(run), "--level", "1", "--steps", str(plan.level_steps),
                      *TRAIN_ARGS, "--checkpoint-every", "100"])
        self.run_cli(["train", "--out", str(run), "--prior", "--steps", str(plan.prior_steps),
                      *TRAIN_ARGS, "--checkpoint-every", "100"])

    # ------------------------------------------------------------------ studies
    def serve_command(self) -> str:
        return (f"hvqeval study serve --database-url {shlex.quote(self.database_url)} "
                f"--instance-dir {shlex.quote(str(self.path('instance')))} --bind 127.0.0.1:8000")

    def step_studies(self, plan: DemoPlan) -> dict[str, Any]:
        ff, msp = (str(self.path("samples", CARDS[k])) for k in CARDS)
        real = f"real:{self.dataset_spec}"
        per_class = plan.study_per_class
        common = ["--classes", str(NUM_CLASSES[self.data]), "--per-class", str(per_class), "--database-url", self.database_url,
                  "--instance-dir", str(self.path("instance")), "--tasks-per-rater", "20", "--json"]
        specs = {
            "demo-rating": ["study", "create", "rating", "--name", "demo-rating", "--model", f"FF={ff}",
                            "--model", f"MSP={msp}", "--real", f"real={self.dataset_spec}", *common],
            "demo-ff-vs-msp": ["study", "create", "pairwise", "--name", "demo-ff-vs-msp", "--a", f"FF={ff}",
                               "--b", f"MSP={msp}", "--pairs-per-class", str(2 * per_class), *common],
            "demo-msp-vs-real": ["study", "create", "pairwise", "--name", "demo-msp-vs-real", "--a", f"MSP={msp}",
                                 "--b", f"real={real}", "--pairs-per-class", str(2 * per_class), *common],
        }
        for name, args in specs.items():
            self.step(f"study_{name}", lambda args=args: self.run_cli(args))
        return self.study_links()

    def study_links(self) -> dict[str, str]:
        """Raters' entry links of the demo's studies (opaque ids, participant id in the URL)."""
        from sqlalchemy import select

        from study_app.db import open_database, session_scope
        from study_app.schema import Study

        with open_database(self.database_url) as engine, session_scope(engine) as session:
            rows = session.execute(select(Study.name, Study.public_id).where(Study.name.like("demo-%"))).all()
        return {name: f"http://127.0.0.1:8000/s/{public_id}/?PROLIFIC_PID=demo-rater-1" for name, public_id in rows}

    # ------------------------------------------------------------------ report
    def write_report(self, plan: DemoPlan, results: Path) -> None:
        from hvqeval.demo_report import build_report

        html = build_report(self, plan, results)
        _atomic_write_text(self.path("report.html"), html)


def run_demo(out: str | Path, minutes: float, data: str, database_url: str | None,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    demo = Demo(Path(out), minutes, data, database_url,
                echo=echo or (lambda line: print(line, file=sys.stderr, flush=True)))
    return demo.run()
