"""What the demo cuts to keep to ``--minutes``: evaluation sizes and optional extras.

``BudgetCuts`` is a part of ``Demo`` (hvqeval.demo.steps): before a sized step it checks that
the steps left fit what is left of the budget and halves the evaluation sizes when they do
not (Table 1's sizes once, at the first model's evaluation, so every model's row is
comparable; the sweep's at its start); before each training stage and at the first step of an
optional extra it leaves out, whole, each extra whose least cost does not fit beside the least
cost of the steps still to run (the training stages' first chunks, the evaluation at its present
sizes). Every cut is recorded in ``steps.json`` and said in plain words by ``cuts``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from hvqeval.demo.plan import (
    EVALUATION_MARGIN,
    MODELS,
    OPTIONAL,
    TRAINING_STAGES,
    DemoPlan,
    TimeBudget,
    sizes,
)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BudgetCuts:
    """Needs from ``Demo``: ``plan``, ``budget``, ``steps``, ``scale``, ``sweep_scale``,
    ``all_steps``, ``echo``, ``order()`` and ``save_steps()``."""

    plan: DemoPlan
    budget: TimeBudget
    steps: dict[str, Any]
    scale: float
    sweep_scale: float
    all_steps: bool
    echo: Callable[[str], None]

    def order(self) -> list[tuple[str, Callable[[], dict[str, Any] | None]]]:
        raise NotImplementedError

    def save_steps(self) -> None:
        raise NotImplementedError

    def fit_scale(self, sweep: bool) -> None:
        """Cut the evaluation sizes (by powers of 2) when the steps left would not end within
        the budget at the current sizes: Table 1's sizes once, at the first model's evaluation
        (every model then gets the same), the sweep's at its start."""
        training = [s for s, *_ in TRAINING_STAGES]
        left = self.steps_left()
        others_left = [s for s in left if s not in training]
        stages_left = tuple(s for s in training if s in left)
        if sweep:
            self.sweep_scale = self.budget.fit_scale(others_left, self.scale, stages_left)
            return
        if any("scale" in step for step in self.steps.values()):
            return  # fixed by the first model's evaluation
        scale = self.budget.fit_scale(others_left, self.scale, stages_left, EVALUATION_MARGIN)
        if scale < self.scale:
            self.echo(
                f"[demo] {self.budget.left():.0f} s left: cutting the evaluation sizes to {scale:g} of the "
                f"plan's ({sizes(self.plan, scale)}) to end within --minutes {self.plan.minutes:g}"
            )
            self.scale = scale

    def steps_left(self) -> list[str]:
        """The steps not yet done (nor left out), in the order they run."""
        return [s for s, _ in self.order() if s not in self.steps]

    def cost(self, steps: list[str]) -> float:
        """Expected seconds of ``steps`` at the least they can take: the training stages'
        floors, the other steps at the present evaluation sizes."""
        training = {s for s, *_ in TRAINING_STAGES}
        return self.budget.expected(
            [s for s in steps if s not in training], self.scale
        ) + self.budget.floors([s for s in steps if s in training])

    def drop_extras(self) -> None:
        """Leave out, whole, each extra not yet started whose least cost does not fit what is
        left of the budget beside the least cost of every other step still to run (the extras
        kept before it included). Called before each training stage, so that a run whose floor
        leaves no room for an extra drops it before the training shares are planned and its
        time goes to the stages, and again at the extra's first step, with what the steps
        since really took."""
        if self.all_steps:
            return
        left = self.steps_left()
        optional = {m for ms in OPTIONAL.values() for m in ms}
        cost = self.cost([s for s in left if s not in optional])
        for group, members in OPTIONAL.items():
            if any(m in self.steps for m in members):
                continue  # under way, done or left out already
            extra = self.cost(list(members))
            if cost + extra <= self.budget.left():
                cost += extra
                continue
            reason = (
                f"no time left for {group}: about {extra:.0f} s on this machine now, beside {cost:.0f} s "
                f"for the other steps still to run, with {max(self.budget.left(), 0):.0f} s left"
            )
            self.echo(f"[demo] leaving out {group}: {reason}")
            for i, member in enumerate(members):
                self.steps[member] = {
                    "seconds": 0.0,
                    "finished_at": now(),
                    "skipped": reason if i == 0 else f"as {group} is",
                }
            self.save_steps()

    def sized_step(
        self, size: str, func: Callable[[int], Any], scale: float | None = None
    ) -> dict[str, Any]:
        """Run ``func`` with the evaluation size ``size`` at ``scale`` (default: Table 1's); the
        size is recorded."""
        n = sizes(self.plan, self.scale if scale is None else scale)[size]
        func(n)
        return {size: n}

    def sampled_per_class(self) -> int:
        """Samples per class of the model with the fewest (every model has at least these)."""
        got = [
            self.steps[f"sample_{key}"]["per_class"]
            for key in MODELS
            if "per_class" in self.steps.get(f"sample_{key}", {})
        ]
        return min(got, default=sizes(self.plan, self.scale)["per_class"])

    def cuts(self) -> list[str]:
        """What the time budget cut, in plain words, for the report and the console."""
        out = []
        classifier = self.steps.get("classifier", {})
        if (
            classifier.get("classifier_steps", self.plan.classifier_steps)
            < self.plan.classifier_steps
        ):
            accuracy = classifier.get("val_accuracy", 0.0)
            verdict = (
                "IS and FID rest on it"
                if accuracy >= 0.5
                else f"it tells the classes apart on {accuracy:.0%} of held-out images, so IS and FID cannot "
                "tell good samples from bad in this run"
            )
            out.append(
                f"the domain classifier trained {classifier['classifier_steps']} of its "
                f"{self.plan.classifier_steps} steps (its time share ran out); {verdict}"
            )
        if self.scale < 1:
            planned, used = sizes(self.plan, 1.0), sizes(self.plan, self.scale)
            out.append(
                f"evaluation sizes were cut to {self.scale:g} of the plan's to end on time: samples per "
                f"class {self.sampled_per_class()} (planned {planned['per_class']}), NLL images "
                f"down to {used['nll_images']} (planned {planned['nll_images']})"
            )
        for group, members in OPTIONAL.items():
            if "skipped" in self.steps.get(members[0], {}):
                out.append(f"{group} was left out ({self.steps[members[0]]['skipped']})")
        return out
