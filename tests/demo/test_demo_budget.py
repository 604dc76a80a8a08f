"""How the demo shares out --minutes (hvqeval.demo.plan.TimeBudget), with a clock the test sets."""

from __future__ import annotations

import pytest

from hvqeval.demo.plan import (
    REFERENCE_SECONDS,
    STAGE_FLOOR_SECONDS,
    TRAINING_STAGES,
    TimeBudget,
    make_plan,
)

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
    # Each stage gets its floor (its first few steps) and a weighted part of the rest.
    floors = sum(STAGE_FLOOR_SECONDS.values())
    assert first == pytest.approx(
        STAGE_FLOOR_SECONDS[STAGES[0]]
        + (450.0 - expected_others - floors) * WEIGHTS[STAGES[0]] / sum(WEIGHTS.values())
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
    # Beyond its floor (which is 3x as long too), the stage gets less than on the idle machine.
    floor = STAGE_FLOOR_SECONDS[STAGES[0]]
    assert (
        budget.share(STAGES[0], STAGES, OTHERS) - 3 * floor
        < idle_share - floor - 3 * REFERENCE_SECONDS["classifier"] / 8
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
    # Time for the other steps and the floors, but none beyond: still only the minimum steps.
    clock.now -= 120.0 - (60.0 - budget.expected(OTHERS) - sum(STAGE_FLOOR_SECONDS.values()))
    assert budget.share(STAGES[0], STAGES, OTHERS) == 0.0


def test_evaluation_sizes_are_cut_by_powers_of_two_until_the_steps_left_fit():
    from hvqeval.demo.plan import MIN_SCALE, SIZED, reference_key, sizes

    clock = Clock()
    plan = make_plan(3, "shapes")
    budget = TimeBudget(plan, earlier_seconds=0.0, clock=clock)
    steps = ["sample_msp", "metrics_msp", "nll_msp", "metrics_real", "study_demo-rating", "report"]
    fixed = sum(REFERENCE_SECONDS[reference_key(s)] for s in steps if reference_key(s) not in SIZED)
    sized = sum(REFERENCE_SECONDS[reference_key(s)] for s in steps if reference_key(s) in SIZED)
    assert budget.fit_scale(steps, 1.0) == 1.0  # plenty of time: the plan's sizes
    clock.now += plan.seconds - (
        fixed + sized / 3
    )  # left: the fixed steps and a third of the sized
    assert budget.fit_scale(steps, 1.0) == 0.25  # 1/2 of them is still too much, 1/4 fits
    assert budget.fit_scale(steps, 0.125) == 0.125  # it never grows back
    clock.now += plan.seconds  # nothing left: the smallest sizes, not zero
    assert budget.fit_scale(steps, 1.0) == MIN_SCALE
    smallest = sizes(plan, MIN_SCALE)
    assert smallest["per_class"] >= 1 and smallest["nll_images"] >= 20
    assert sizes(plan, 1.0)["per_class"] == plan.per_class
    assert sizes(plan, 0.5)["nll_images"] == plan.evaluation_images // 10


def test_a_twin_measured_at_a_cut_scale_is_expected_to_cost_more_at_the_full_one():
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=Clock())
    budget.record("sample_ff", 10.0, scale=0.25)
    assert budget.expected(["sample_msp"], scale=0.25) == pytest.approx(10.0)
    assert budget.expected(["sample_msp"], scale=1.0) == pytest.approx(40.0)


def test_a_classifier_stopped_by_time_reads_as_a_slow_machine():
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=Clock())
    # It did half its reference work in its reference time: the machine is twice as slow.
    budget.record("classifier", REFERENCE_SECONDS["classifier"], fraction=0.5)
    assert budget.slowdown() == pytest.approx(2.0)


def test_the_floors_of_the_stages_still_to_train_are_kept_out_of_the_evaluation():
    clock = Clock()
    plan = make_plan(3, "shapes")
    budget = TimeBudget(plan, earlier_seconds=0.0, clock=clock)
    steps = ["sample_ff", "metrics_ff", "nll_ff", "report"]
    full = budget.expected(steps)
    clock.now += plan.seconds - full  # exactly enough for the evaluation at the plan's sizes
    assert budget.fit_scale(steps, 1.0) == 1.0
    # ... but not once the next model's stages need their first steps too, nor with a margin.
    assert budget.fit_scale(steps, 1.0, ("train_msp_level1", "train_msp_prior")) < 1.0
    assert budget.fit_scale(steps, 1.0, margin=1.3) < 1.0
    assert budget.floors(("train_msp_level1",)) == STAGE_FLOOR_SECONDS["train_msp_level1"]
