"""What the demo cuts to keep to ``--minutes``: evaluation sizes and optional extras.

``BudgetCuts`` is a part of ``Demo`` (hvqeval.demo.steps): before a sized step it checks that
the steps left fit what is left of the budget and halves the evaluation sizes when they do
not (Table 1's sizes once, at the first model's evaluation, so every model's row is
comparable; the sweep's at its start); at the first step of an optional extra it leaves the
whole extra out when it does not fit beside the steps every report needs. Every cut is
recorded in ``steps.json`` and said in plain words by ``cuts``.
"""

from __future__ import annotations

from collections.abc import Callable
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


class BudgetCuts:
    """Needs from ``Demo``: ``plan``, ``budget``, ``steps``, ``scale``, ``sweep_scale``,
    ``all_steps``, ``echo`` and ``order()``."""

    plan: DemoPlan
    budget: TimeBudget
    steps: dict[str, Any]
    scale: float
    sweep_scale: float
    all_steps: bool
    echo: Callable[[str], None]

    def order(self) -> list[tuple[str, Callable[[], dict[str, Any] | None]]]:
        raise NotImplementedError

    def fit_scale(self, sweep: bool) -> None:
        """Cut the evaluation sizes (by powers of 2) when the steps left would not end within
        the budget at the current sizes: Table 1's sizes once, at the first model's evaluation
        (every model then gets the same), the sweep's at its start."""
        done = set(self.steps)
        training = [s for s, *_ in TRAINING_STAGES]
        others_left = [s for s, _ in self.order() if s not in done and s not in training]
        stages_left = tuple(s for s in training if s not in done)
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

    def skip_reason(self, name: str) -> str | None:
        """Why the optional step ``name`` is left out (its group was, or the group does not fit
        what is left beside the steps every report needs), or None to run it."""
        group = next((g for g, members in OPTIONAL.items() if name in members), None)
        if group is None or self.all_steps:
            return None
        members = OPTIONAL[group]
        if any("skipped" in self.steps.get(m, {}) for m in members):
            return f"as {group} is"
        if name != members[0]:
            return None
        done, optional = set(self.steps), {m for ms in OPTIONAL.values() for m in ms}
        training = {s for s, *_ in TRAINING_STAGES}
        left = [s for s, _ in self.order() if s not in done]
        needed = [s for s in left if s not in optional]
        cost = self.budget.expected(
            [s for s in needed if s not in training], self.scale
        ) + self.budget.floors([s for s in needed if s in training])
        extra = self.budget.expected(
            [s for s in members if s not in training], self.scale
        ) + self.budget.floors([s for s in members if s in training])
        if cost + extra <= self.budget.left():
            return None
        return (
            f"no time left for {group}: about {extra:.0f} s on this machine now, beside {cost:.0f} s for the "
            f"steps every report needs, with {max(self.budget.left(), 0):.0f} s left"
        )

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
