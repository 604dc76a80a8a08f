"""Extras the time budget leaves out whole (hvqeval.demo.plan.OPTIONAL), with a clock the test sets."""

from __future__ import annotations

import json

from hvqeval.demo import Demo
from hvqeval.demo.plan import OPTIONAL, TRAINING_STAGES

SWEEP, BASELINE = OPTIONAL["the temperature sweep"], OPTIONAL["the PixelCNN baseline"]
TRAINING = {name for name, *_ in TRAINING_STAGES}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _never_runs():
    raise AssertionError("a left-out step ran")


def test_an_extra_that_does_not_fit_is_left_out_whole_and_reported(tmp_path):
    clock, lines = Clock(), []
    demo = Demo(tmp_path / "demo", 3, "shapes", None, echo=lines.append, clock=clock)
    demo.drop_extras()
    assert not set(demo.steps)  # a fresh 3-minute run has time for both
    clock.now += 170.0  # 10 s of 180 left: not enough beside the steps every report needs
    demo.step(SWEEP[0], _never_runs)

    # Recorded as left out (not as done with results), with the rest of its group.
    steps = json.loads((tmp_path / "demo" / "steps.json").read_text())
    reason = steps[SWEEP[0]]["skipped"]
    assert reason.startswith("no time left for the temperature sweep") and "10 s left" in reason
    assert "commands" not in steps[SWEEP[0]]
    assert steps["plot_temperature"]["skipped"] == "as the temperature sweep is"
    assert any(f"{SWEEP[0]}: left out" in line for line in lines)
    # The baseline, still to come, does not fit either: it is left out now too.
    assert steps[BASELINE[0]]["skipped"].startswith("no time left for the PixelCNN baseline")
    assert demo.cuts() == [
        f"the temperature sweep was left out ({reason})",
        f"the PixelCNN baseline was left out ({steps[BASELINE[0]]['skipped']})",
    ]
    demo.step("plot_temperature", _never_runs)
    assert "sample_ff" not in demo.steps  # the steps every report needs are not left out


def test_the_measured_floor_leaves_an_extra_out_before_the_training_shares_are_planned(tmp_path):
    clock, lines = Clock(), []
    demo = Demo(tmp_path / "demo", 6, "shapes", None, echo=lines.append, clock=clock)
    budget = demo.budget
    for done in ("classifier", "train_ff_level1"):
        demo.steps[done] = {"seconds": 1.0}
    # The FF level's first chunk took 3 times its reference figure: the other stages' first
    # chunks (the baseline's among them) are expected 3 times slower too.
    budget.record_floor("train_ff_level1", 3 * budget.reference("train_ff_level1"))
    left = demo.steps_left()
    optional = set(SWEEP) | set(BASELINE)
    required = [s for s in left if s not in optional]
    everything = demo.cost(required) + demo.cost(list(SWEEP)) + demo.cost(list(BASELINE))
    clock.now += budget.left() - (everything - 0.5)  # 0.5 s short of paying for both extras
    # Without the floors of the stages still to train there would be time for both.
    assert budget.expected([s for s in left if s not in TRAINING]) < budget.left()

    seen = []
    demo.step("train_ff_prior", lambda: seen.append(set(demo.steps)) or {"step": 2})
    # Before the stage ran (and its share was planned) the baseline was left out; the sweep,
    # first in line and cheaper, still fits beside the steps every report needs.
    assert BASELINE[0] in seen[0] and SWEEP[0] not in seen[0]
    assert demo.steps[BASELINE[0]]["skipped"].startswith("no time left for the PixelCNN baseline")
    assert all(demo.steps[m]["skipped"] == "as the PixelCNN baseline is" for m in BASELINE[1:])
    assert any(line.startswith("[demo] leaving out the PixelCNN baseline") for line in lines)


def test_all_steps_runs_the_extras_whatever_the_time(tmp_path):
    clock = Clock()
    demo = Demo(
        tmp_path / "demo", 3, "shapes", None, echo=lambda line: None, clock=clock, all_steps=True
    )
    clock.now += 1000.0  # far over budget
    demo.drop_extras()
    assert not any(m in demo.steps for members in OPTIONAL.values() for m in members)
