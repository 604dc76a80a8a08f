"""How the demo shares out --minutes (hvqeval.demo.plan.TimeBudget), with a clock the test sets."""

from __future__ import annotations

import pytest

from hvqeval.demo.plan import REFERENCE_SECONDS, TRAINING_STAGES, TimeBudget, make_plan

STAGES = [name for name, *_ in TRAINING_STAGES]
WEIGHTS = {name: weight for name, _, _, weight in TRAINING_STAGES}
OTHERS = ["sample_ff", "metrics_ff", "nll_ff", "study_demo-rating", "report"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_shares_split_what_is_left_after_the_other_steps_by_weight():
    clock = Clock()
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=50.0, clock=clock)
    clock.now += 100.0
    assert budget.spent() == pytest.approx(150.0)
    assert budget.left() == pytest.approx(450.0)
    expected_others = sum(
        REFERENCE_SECONDS[k] for k in ("sample", "metrics", "nll", "study", "report")
    )
    assert budget.expected(OTHERS) == pytest.approx(expected_others)
    shares = [budget.share(s, STAGES[i:], OTHERS) for i, s in enumerate(STAGES)]
    # With no time passing, the shares of every stage add up to all the training time left.
    first = budget.share(STAGES[0], STAGES, OTHERS)
    assert first == pytest.approx(
        (450.0 - expected_others) * WEIGHTS[STAGES[0]] / sum(WEIGHTS.values())
    )
    assert shares[-1] == pytest.approx(450.0 - expected_others)


def test_a_slower_machine_leaves_less_time_for_training():
    clock = Clock()
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=clock)
    idle_share = budget.share(STAGES[0], STAGES, OTHERS)
    clock.now += 3 * REFERENCE_SECONDS["classifier"]
    budget.record("classifier", 3 * REFERENCE_SECONDS["classifier"])  # three times slower than idle
    assert budget.slowdown() == pytest.approx(3.0)
    assert budget.expected(OTHERS) == pytest.approx(
        3 * sum(REFERENCE_SECONDS[k] for k in ("sample", "metrics", "nll", "study", "report"))
    )
    assert (
        budget.share(STAGES[0], STAGES, OTHERS)
        < idle_share - 3 * REFERENCE_SECONDS["classifier"] / 6
    )


def test_the_second_model_is_planned_with_what_the_first_ones_steps_took():
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=Clock())
    budget.record("metrics_ff", 40.0)
    budget.record("train_ff_level1", 300.0)  # training stages are not "other" steps
    assert "train_ff_level1" not in budget.measured
    assert budget.expected(["metrics_msp"]) == pytest.approx(40.0)
    assert budget.expected(["nll_msp"]) == pytest.approx(
        REFERENCE_SECONDS["nll"] * budget.slowdown()
    )


def test_no_time_left_gives_no_share():
    clock = Clock()
    budget = TimeBudget(make_plan(1, "shapes"), earlier_seconds=0.0, clock=clock)
    clock.now += 120.0
    assert budget.share(STAGES[0], STAGES, OTHERS) == 0.0
