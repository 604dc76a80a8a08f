"""The demo's steps, each one or more ``hvqeval`` commands run in this process.

Each step is recorded in ``steps.json`` only once all its commands finished, so a rerun
skips finished steps and redoes (or, for training, continues) the step that was under way.
Ctrl-C inside a command makes that command save what it has and return 130; the demo then
stops at once with the same interrupt, recording nothing for the step.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from hvqeval.demo.cuts import BudgetCuts, now
from hvqeval.demo.plan import (
    CARDS,
    CLASSIFIER_FIXED,
    CLASSIFIER_SHARE,
    DATASET_CARD_SETTINGS,
    DATASET_NAMES,
    DEMO_CARD_SETTINGS,
    IMAGE_SIZE,
    LABELS,
    MIN_STAGE_STEPS,
    MODELS,
    NUM_CLASSES,
    OPTIONAL,
    PLAN_VERSION,
    SIZED,
    SWEEP_MODEL,
    SWEEP_VALUES,
    TRAINING_STAGES,
    DemoError,
    DemoPlan,
    TimeBudget,
    chunk_seconds,
    make_plan,
    reference_key,
    train_args,
)
from hvqeval.demo.studies import serve_command, study_links, study_specs
from hvqeval.demo.threads import CoreShare

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (cli.HvqevalGroup)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Demo(BudgetCuts):
    """Runs the demo's steps in order, skipping the finished ones."""

    def __init__(
        self,
        out: Path,
        minutes: float,
        data: str,
        database_url: str | None,
        echo: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        seconds_before: float = 0.0,
        all_steps: bool = False,
    ):
        """``seconds_before``: time already spent on this run before the demo started (the
        process's start-up), counted against the budget; ``all_steps``: run the optional
        extras (``OPTIONAL``) even when the budget cannot pay for them."""
        if data not in DATASET_CARD_SETTINGS:
            raise DemoError(
                f"--data must be one of {', '.join(DATASET_CARD_SETTINGS)}, got {data!r}"
            )
        if minutes < 1:
            raise DemoError(
                f"--minutes must be at least 1 (the demo needs time to train), got {minutes:g}"
            )
        self.out = out.resolve()  # printed paths work from any folder
        self.minutes = minutes
        self.data = data
        self.echo = echo
        self.clock = clock
        self.all_steps = all_steps
        self.out.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.out / 'study.sqlite3'}"
        self.steps_path = self.out / "steps.json"
        self.steps: dict[str, Any] = (
            json.loads(self.steps_path.read_text()) if self.steps_path.exists() else {}
        )
        if all_steps:  # the extras an earlier run left out for its budget run now
            self.steps = {name: s for name, s in self.steps.items() if "skipped" not in s}
        self.commands: list[str] = []
        self.started = clock()
        # Import the heavy libraries now, so that the first step's time (which re-plans the
        # rest) is the step's own and not the import's; the other processes' load is read
        # over the imports too.
        import torch

        self.cores = CoreShare(most=torch.get_num_threads())
        self.plan = self.load_plan()
        # The budget counts what the steps finished by earlier runs took, plus this run's time.
        earlier = sum(s.get("seconds", 0.0) for s in self.steps.values())
        self.budget = TimeBudget(self.plan, earlier + seconds_before, clock)
        # Evaluation scale (1.0: the plan's sizes); it only goes down, and a rerun keeps the
        # smallest one a finished step ran at.
        self.scale = min((s["scale"] for s in self.steps.values() if "scale" in s), default=1.0)
        self.sweep_scale = self.scale  # the sweep's own (its rows are not compared with Table 1's)
        import torchvision  # noqa: F401

        import hvqeval.cli  # noqa: F401

    # ------------------------------------------------------------------ plumbing
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def run_cli(self, args: list[str], capture: bool = False) -> str:
        """Run one ``hvqeval`` command in this process and return what it printed on stdout
        when ``capture``. User errors propagate unchanged; an interrupted command (exit 130)
        raises ``KeyboardInterrupt`` here, so the demo stops with it."""
        import click

        from hvqeval.cli import cli

        line = "hvqeval " + " ".join(shlex.quote(a) for a in args)
        self.commands.append(line)
        self.echo(f"$ {line}")
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout) if capture else contextlib.nullcontext():
            try:
                status = cli.main(args=args, prog_name="hvqeval", standalone_mode=False)
            except click.exceptions.Abort:  # Ctrl-C while click was still parsing
                raise KeyboardInterrupt from None
        if status == INTERRUPTED:
            raise KeyboardInterrupt
        if isinstance(status, int) and status != 0:
            raise DemoError(f"`{line}` stopped with exit status {status}")
        return stdout.getvalue()

    def save_steps(self) -> None:
        atomic_write_text(self.steps_path, json.dumps(self.steps, indent=1))

    def step(self, name: str, func: Callable[[], dict[str, Any] | None]) -> None:
        """Run ``func`` unless ``name`` is done or left out; record it only when it returned."""
        training = any(name == s for s, *_ in TRAINING_STAGES)
        if name not in self.steps and (
            training or any(name == members[0] for members in OPTIONAL.values())
        ):
            self.drop_extras()
        if "skipped" in self.steps.get(name, {}):
            self.echo(f"[demo] {name}: left out, {self.steps[name]['skipped']}")
            return
        if name in self.steps:
            self.echo(f"[demo] {name}: done earlier, reused")
            self.commands.extend(self.steps[name].get("commands", []))
            return
        self.echo(f"[demo] {name} ...")
        threads = self.set_threads()
        sized = reference_key(name) in SIZED
        sweep = reference_key(name) == "sweep"
        if sized:
            self.fit_scale(sweep)
        start, cpu = self.clock(), self.cpu_seconds()
        first = len(self.commands)
        result = func()
        extra = result if isinstance(result, dict) else {}  # training stages report their step
        if sized:
            extra = {
                **extra,
                **({"sweep_scale": self.sweep_scale} if sweep else {"scale": self.scale}),
            }
        seconds = self.clock() - start
        self.budget.record(
            name,
            seconds,
            fraction=extra.get("fraction", 1.0),
            scale=extra.get("scale", extra.get("sweep_scale", 1.0)),
        )
        self.steps[name] = {
            "seconds": round(seconds, 1),
            "cpu_seconds": round(self.cpu_seconds() - cpu, 1),
            "threads": threads,
            "finished_at": now(),
            "commands": self.commands[first:],
            **extra,
        }
        self.save_steps()

    @staticmethod
    def cpu_seconds() -> float:
        """CPU seconds this process has used (all its threads): what a step costs whatever the
        machine's load, beside its wall-clock seconds."""
        times = psutil.Process().cpu_times()
        return times.user + times.system

    def set_threads(self) -> int:
        """Give torch one thread per core other processes leave free (``CoreShare``)."""
        import torch

        threads = self.cores.threads()
        if threads != torch.get_num_threads():
            self.echo(
                f"[demo] {threads} torch thread(s): other processes kept "
                f"{self.cores.others:.1f} of {self.cores.cores} cores busy"
            )
            torch.set_num_threads(threads)
        return threads

    def card_args(self, key: str) -> list[str]:
        args = ["--config", MODELS[key]]
        for setting in DEMO_CARD_SETTINGS[key] + DATASET_CARD_SETTINGS[self.data]:
            args += ["--set", setting]
        return args

    # ------------------------------------------------------------------ plan
    def load_plan(self) -> DemoPlan:
        plan_path = self.path("plan.json")
        if not plan_path.exists():
            plan = make_plan(self.minutes, self.data)
            atomic_write_text(plan_path, json.dumps(asdict(plan), indent=1))
            return plan
        stored = json.loads(plan_path.read_text())
        if stored.get("version") != PLAN_VERSION:
            raise DemoError(
                f"{plan_path} was written by another version of the demo; "
                "use another --out folder or delete that one"
            )
        plan = DemoPlan(**stored)
        if plan.data != self.data:
            raise DemoError(
                f"{self.out} holds a demo on {plan.data!r}; use another --out for --data {self.data}"
            )
        if plan.minutes != self.minutes:
            self.echo(
                f"[demo] keeping the budget of the first run in this folder ({plan.minutes:g} minutes)"
            )
        return plan

    def order(self) -> list[tuple[str, Callable[[], dict[str, Any] | None]]]:
        """Every step in the order it runs. Each model is evaluated right after its training,
        so the next model's share is planned with what the earlier ones' steps really took.
        Sized steps read the evaluation sizes when they start (``self.sizes``)."""
        plan, data = self.plan, self.data
        weights = str(self.path("weights", f"{data}_classifier.pt"))
        results = self.path("results", "results.jsonl")
        cache = str(self.path("cache"))
        metric_args = [
            "--reference",
            f"{data}:val:{plan.evaluation_images}",
            "--metrics",
            "isc,fid",
            "--extractor",
            "domain",
            "--weights",
            weights,
            "--splits",
            "10",
            "--device",
            "cpu",
            "--cache-dir",
            cache,
        ]
        steps: list[tuple[str, Callable[[], dict[str, Any] | None]]] = [
            ("classifier", self.train_classifier)
        ]
        for key, card in MODELS.items():
            run, samples = self.path("runs", card), self.path("samples", card)
            for name, stage_key, flags, _ in TRAINING_STAGES:
                if stage_key == key:
                    steps.append(
                        (
                            name,
                            lambda name=name, key=key, flags=flags: self.train_stage(
                                name, key, flags
                            ),
                        )
                    )
            steps += [
                (
                    f"sample_{key}",
                    lambda run=run, samples=samples: self.sized_step(
                        "per_class",
                        lambda n: self.run_cli(
                            [
                                "sample",
                                "--run",
                                str(run),
                                "--classes",
                                "all",
                                "--per-class",
                                str(n),
                                "--temperature",
                                "1.0",
                                "--seed",
                                "0",
                                "--sampler",
                                "cached",
                                "--batch-size",
                                "60",
                                "--out",
                                str(samples),
                                "--device",
                                "cpu",
                            ]
                        ),
                    ),
                ),
                (
                    f"metrics_{key}",
                    lambda samples=samples: self.run_cli(
                        [
                            "metrics",
                            "--samples",
                            str(samples),
                            *metric_args,
                            "--results",
                            str(results),
                        ]
                    ),
                ),
                (
                    f"nll_{key}",
                    lambda run=run: self.sized_step(
                        "nll_images",
                        lambda n: self.run_cli(
                            [
                                "nll",
                                "--run",
                                str(run),
                                "--data",
                                data,
                                "--split",
                                "test",
                                "--limit",
                                str(n),
                                "--device",
                                "cpu",
                                "--results",
                                str(results),
                            ]
                        ),
                    ),
                ),
            ]
            if key in CARDS:  # hierarchies only: the baseline has no codes to reconstruct from
                steps += [
                    (
                        f"reconstruct_{key}",
                        lambda run=run, card=card: self.run_cli(
                            [
                                "reconstruct",
                                "--run",
                                str(run),
                                "--images",
                                f"{data}:test",
                                "--limit",
                                "5",
                                "--samples-per-image",
                                "3",
                                "--seed",
                                "0",
                                "--out",
                                str(self.path("reconstructions", card)),
                                "--device",
                                "cpu",
                            ]
                        ),
                    ),
                    (
                        f"neighbours_{key}",
                        lambda samples=samples, card=card: self.run_cli(
                            [
                                "neighbours",
                                "--samples",
                                str(samples),
                                "--dataset",
                                f"{data}:train:{plan.train_images}",
                                "--space",
                                "pixel",
                                "--k",
                                "8",
                                "--limit",
                                "6",
                                "--device",
                                "cpu",
                                "--cache-dir",
                                cache,
                                "--out",
                                str(self.path("neighbours", card)),
                            ]
                        ),
                    ),
                ]
            if key == SWEEP_MODEL:  # FID and IS against temperature (issue: sweeps and plots)
                steps.append(
                    (
                        f"sweep_{key}",
                        lambda run=run, card=card: self.sized_step(
                            "sweep_per_class",
                            scale=self.sweep_scale,
                            func=lambda n: self.run_cli(
                                [
                                    "sweep",
                                    "temperature",
                                    "--run",
                                    str(run),
                                    "--values",
                                    SWEEP_VALUES,
                                    "--per-class",
                                    str(n),
                                    "--model",
                                    LABELS[SWEEP_MODEL],
                                    "--out",
                                    str(self.path("samples", f"{card}_temperature")),
                                    *metric_args,
                                    "--results",
                                    str(self.sweep_results),
                                ],
                                capture=True,
                            ),
                        ),
                    )
                )
        # The real images scored like a model's samples (same n as the fewest any model got, same
        # reference): the IS and FID a perfect model would get with these settings.
        steps.append(
            (
                "metrics_real",
                lambda: self.run_cli(
                    [
                        "metrics",
                        "--samples",
                        f"{data}:test:{NUM_CLASSES[data] * self.sampled_per_class()}",
                        "--model",
                        self.real_label,
                        *metric_args,
                        "--results",
                        str(results),
                    ]
                ),
            )
        )
        for name in study_specs(self.out, data, self.database_url, 1):
            steps.append(
                (
                    f"study_{name}",
                    lambda name=name: self.run_cli(
                        study_specs(
                            self.out,
                            data,
                            self.database_url,
                            min(plan.study_per_class, self.sampled_per_class()),
                            self.sampled_per_class(),
                        )[name]
                    ),
                )
            )
        steps += [
            (
                "plot_temperature",
                lambda: self.run_cli(
                    [
                        "plot",
                        "temperature",
                        "--results",
                        str(self.sweep_results),
                        "--out",
                        str(self.path("figures", "temperature.png")),
                    ],
                    capture=True,
                ),
            ),
            (
                "plot_training",
                lambda: self.run_cli(
                    [
                        "plot",
                        "training",
                        *(
                            a
                            for card in MODELS.values()
                            if (self.path("runs", card, "log.jsonl")).exists()
                            for a in ("--run", str(self.path("runs", card)))
                        ),
                        "--out",
                        str(self.path("figures", "training.png")),
                    ],
                    capture=True,
                ),
            ),
            ("report", lambda: self.write_report(results)),
        ]
        return steps

    @property
    def sweep_results(self) -> Path:
        """The sweep's rows have their own store, so Table 1 and the quality checks read only
        the samples at temperature 1.0."""
        return self.path("results", "temperature.jsonl")

    @property
    def real_label(self) -> str:
        return f"Real images ({DATASET_NAMES[self.data]})"

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        import torch

        threads = torch.get_num_threads()
        try:
            for name, func in self.order():
                self.step(name, func)
        finally:
            torch.set_num_threads(threads)
        from hvqeval.demo.quality import assess

        quality = assess(self.path("results", "results.jsonl"), self.steps, self.real_label)
        elapsed = self.clock() - self.started
        return {
            "out": str(self.out),
            "report": str(self.path("report.html")),
            "studies": self.study_links(),
            "database_url": self.database_url,
            "plan": asdict(self.plan),
            "seconds_this_run": round(elapsed, 1),
            "seconds_all_runs": round(self.budget.spent(), 1),
            "training_steps": self.training_steps(),
            "quality": [q.as_dict() for q in quality],
            "cuts": self.cuts(),
            "serve_command": self.serve_command(),
        }

    def training_steps(self) -> dict[str, int]:
        """Steps each finished training stage got, e.g. ``{"train_ff_level1": 412, ...}``."""
        return {
            name: self.steps[name]["step"]
            for name, *_ in TRAINING_STAGES
            if "step" in self.steps.get(name, {})
        }

    def train_classifier(self) -> dict[str, Any]:
        """``hvqeval features train`` for at most its share of the budget (``--max-seconds``)."""
        plan = self.plan
        seconds = max(CLASSIFIER_SHARE * plan.seconds, 1.0)
        printed = self.run_cli(
            [
                "features",
                "train",
                "--data",
                self.data,
                "--out",
                str(self.path("weights", f"{self.data}_classifier.pt")),
                "--steps",
                str(plan.classifier_steps),
                "--max-seconds",
                f"{seconds:.0f}",
                "--batch-size",
                str(plan.classifier_batch),
                "--val-size",
                str(plan.classifier_val),
                "--image-size",
                str(IMAGE_SIZE),
                "--device",
                "cpu",
                "--json",
            ],
            capture=True,
        )
        stats = json.loads(printed)
        done = stats["steps"] / plan.classifier_steps
        # A classifier stopped by time measures the machine's speed over the part it did.
        return {
            "classifier_steps": stats["steps"],
            "val_accuracy": stats["val_accuracy"],
            "fraction": CLASSIFIER_FIXED + (1 - CLASSIFIER_FIXED) * done,
        }

    def train_stage(self, name: str, key: str, flags: tuple[str, ...]) -> dict[str, Any]:
        """Train one stage for its share of the time left, as ``hvqeval train`` chunks.

        The first chunk is MIN_STAGE_STEPS steps (all the stage gets when its share is 0); what
        it took is the stage's floor (``TimeBudget.record_floor``), which the later stages of
        its kind are planned with. Each later chunk is a ``--steps`` target sized from the speed
        of the chunk before, lasting at most ``chunk_seconds`` of what is left of the share, so a
        load change shows up in the next chunk's size; the last chunk is sized to end at the
        share's deadline. The share itself is planned just before the stage starts
        (``TimeBudget.share``)."""
        left = self.steps_left()
        stages_left = [s for s, *_ in TRAINING_STAGES if s in left]
        others_left = [s for s in left if s not in stages_left]
        seconds = self.budget.share(name, stages_left, others_left, self.scale)
        least = self.cost(left)
        if least > self.budget.left():
            self.echo(
                f"[demo] the steps left need about {least:.0f} s on this machine now at the least, more "
                f"than the {max(self.budget.left(), 0):.0f} s left: this run will overrun --minutes "
                f"{self.plan.minutes:g}; each training stage gets its {MIN_STAGE_STEPS} steps only"
            )
        self.echo(
            f"[demo] {name}: {seconds:.0f} s of the {self.budget.left():.0f} s left "
            f"({self.budget.slowdown():.1f}x a free core's time so far)"
        )
        run = self.path("runs", MODELS[key])
        deadline = self.clock() + seconds
        base = [] if (run / "config.json").exists() else self.card_args(key)
        step, per_step, overhead, per_step_seen, floor = 0, None, 0.0, 0, None
        while True:
            if per_step is None:  # the first chunk (a resumed run says where it is)
                if step >= MIN_STAGE_STEPS and seconds <= 0:
                    break
                target = step + MIN_STAGE_STEPS if seconds > 0 else MIN_STAGE_STEPS
            else:
                share_left = deadline - self.clock() - overhead
                fit = int(share_left / per_step)
                if fit < 1:
                    break
                target = step + max(1, min(fit, int(chunk_seconds(share_left) / per_step)))
            started = self.clock()
            printed = self.run_cli(
                [
                    "train",
                    *base,
                    "--out",
                    str(run),
                    *flags,
                    "--steps",
                    str(target),
                    *train_args(self.plan),
                    "--checkpoint-every",
                    "100",
                    "--json",
                ],
                capture=True,
            )
            result = json.loads(printed)[0]
            base, step = [], result["step"]
            if result["steps_trained"] > 0:
                took = self.clock() - started
                if per_step is None:
                    floor = took
                    self.budget.record_floor(name, took)
                per_step = result["seconds"] / result["steps_trained"]
                # Building the model, loading data and checkpoints: paid again by every chunk (the
                # least seen, as the prior's first chunk also encodes the training split once).
                cost = max(took - result["seconds"], 0.0)
                overhead = cost if per_step_seen == 0 else min(overhead, cost)
                per_step_seen += 1
                self.echo(
                    f"[demo] {name}: step {step}, {1 / per_step:.1f} steps/s, "
                    f"{max(deadline - self.clock(), 0):.0f} s of its share left"
                )
        return {
            "step": step,
            "share_seconds": round(seconds, 1),
            **({} if floor is None else {"floor_seconds": round(floor, 1)}),
        }

    # ------------------------------------------------------------------ studies
    def serve_command(self) -> str:
        return serve_command(self.out, self.database_url)

    def study_links(self) -> dict[str, str]:
        return study_links(self.database_url)

    # ------------------------------------------------------------------ report
    def write_report(self, results: Path) -> None:
        from hvqeval.demo.quality import assess
        from hvqeval.demo.report import ReportInputs, build_report

        inputs = ReportInputs(
            out=self.out,
            plan=self.plan,
            results=results,
            commands=list(self.commands),
            serve_command=self.serve_command(),
            study_links=self.study_links(),
            training_steps=self.training_steps(),
            quality=assess(results, self.steps, self.real_label),
            real_label=self.real_label,
            cuts=self.cuts(),
            per_class=self.sampled_per_class(),
        )
        atomic_write_text(self.path("report.html"), build_report(inputs))


def run_demo(
    out: str | Path,
    minutes: float,
    data: str,
    database_url: str | None,
    echo: Callable[[str], None] | None = None,
    all_steps: bool = False,
) -> dict[str, Any]:
    import sys

    # The budget counts from the start of this process: Python and the imports take seconds on
    # a busy machine, and the user waits for them too.
    started_ago = max(time.time() - psutil.Process().create_time(), 0.0)
    demo = Demo(
        Path(out),
        minutes,
        data,
        database_url,
        echo=echo or (lambda line: print(line, file=sys.stderr, flush=True)),
        seconds_before=started_ago,
        all_steps=all_steps,
    )
    return demo.run()
