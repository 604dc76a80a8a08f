"""How the demo shares out --minutes (hvqeval.demo.plan.TimeBudget), with a clock the test sets."""

from __future__ import annotations

import pytest

from hvqeval.demo.plan import (
    CHUNK_SECONDS,
    REFERENCE_MINUTES,
    REFERENCE_SECONDS,
    STAGE_FLOOR_SECONDS,
    TRAINING_STAGES,
    TimeBudget,
    chunk_seconds,
    make_plan,
    stage_kind,
    work,
)

STAGES = [name for name, *_ in TRAINING_STAGES]
WEIGHTS = {name: weight for name, _, _, weight in TRAINING_STAGES}
OTHERS = ["sample_ff", "metrics_ff", "nll_ff", "study_demo-rating", "report"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_shares_split_what_is_left_after_the_other_steps_and_the_floors_by_weight():
    clock = Clock()
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=50.0, clock=clock)
    clock.now += 100.0
    assert budget.spent() == pytest.approx(150.0)
    assert budget.left() == pytest.approx(450.0)
    expected_others = sum(budget.reference(s) for s in OTHERS)
    assert budget.expected(OTHERS) == pytest.approx(expected_others)
    shares = [budget.share(s, STAGES[i:], OTHERS) for i, s in enumerate(STAGES)]
    # Each stage gets its floor (its first chunk) and a weighted part of the rest.
    floors = sum(budget.reference(s) for s in STAGES)
    assert shares[0] == pytest.approx(
        budget.reference(STAGES[0])
        + (450.0 - expected_others - floors) * WEIGHTS[STAGES[0]] / sum(WEIGHTS.values())
    )
    # With no time passing, the last stage left gets all the training time there is.
    assert shares[-1] == pytest.approx(450.0 - expected_others)


def test_reference_figures_follow_the_work_the_plan_asks_for():
    plan = make_plan(REFERENCE_MINUTES, "shapes")
    budget = TimeBudget(plan, earlier_seconds=0.0, clock=Clock())
    assert budget.reference("nll_ff") == REFERENCE_SECONDS["nll"]
    assert budget.reference("train_ff_prior") == pytest.approx(
        STAGE_FLOOR_SECONDS["train_ff_prior"]
    )
    short = TimeBudget(make_plan(2, "shapes"), earlier_seconds=0.0, clock=Clock())
    # A 2-minute plan scores 1,000 reference images instead of 5,000 and encodes 400 training
    # images instead of 4,000 before its prior's first step.
    assert short.reference("nll_ff") == pytest.approx(REFERENCE_SECONDS["nll"] / 5)
    assert short.reference("train_ff_prior") < STAGE_FLOOR_SECONDS["train_ff_prior"] / 3
    assert short.reference("train_ff_level1") == STAGE_FLOOR_SECONDS["train_ff_level1"]
    assert work("report", make_plan(30, "shapes")) == 1.0


def test_a_slower_machine_leaves_less_time_for_training():
    clock = Clock()
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=clock)
    idle_share = budget.share(STAGES[0], STAGES, OTHERS)
    classifier = budget.reference("classifier")
    clock.now += 3 * classifier
    budget.record("classifier", 3 * classifier)  # three times slower than the reference
    assert budget.slowdown() == pytest.approx(3.0)
    assert budget.expected(OTHERS) == pytest.approx(3 * sum(budget.reference(s) for s in OTHERS))
    # Beyond its floor (which is 3x as long too), the stage gets less than on the idle machine.
    floor = budget.reference(STAGES[0])
    assert budget.floor(STAGES[0]) == pytest.approx(3 * floor)
    assert budget.share(STAGES[0], STAGES, OTHERS) - 3 * floor < idle_share - floor - classifier


def test_the_second_model_is_planned_with_what_the_first_ones_steps_took():
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=Clock())
    budget.record("metrics_ff", 40.0)
    budget.record("train_ff_level1", 300.0)  # a whole training stage is not a speed measurement
    assert "train_ff_level1" not in budget.measured
    assert budget.expected(["metrics_msp"]) == pytest.approx(40.0)
    # The latest twin counts: the second model's metrics found the FID reference's features cached.
    budget.record("metrics_msp", 2.0)
    assert budget.expected(["metrics_pixelcnn"]) == pytest.approx(2.0)
    assert budget.expected(["nll_msp"]) == pytest.approx(
        budget.reference("nll_msp") * budget.slowdown()
    )


def test_a_stage_of_the_same_kind_is_planned_with_the_first_chunk_that_ran():
    budget = TimeBudget(make_plan(6, "shapes"), earlier_seconds=0.0, clock=Clock())
    assert (
        stage_kind("train_ff_prior")
        == stage_kind("train_msp_prior")
        != stage_kind("train_pixelcnn_prior")
    )
    # The classifier took its reference time; the FF prior's first chunk (its encoding of the
    # training split) took 60 s on this machine, far more than its reference figure.
    budget.record("classifier", budget.reference("classifier"))
    budget.record_floor("train_ff_prior", 60.0)
    # The MSP prior is planned with what the FF prior's first chunk took ...
    assert budget.floor("train_msp_prior") == pytest.approx(60.0)
    # ... the other kinds with the slowdown of every finished step, that chunk among them.
    slowdown = (60.0 + budget.reference("classifier")) / (
        budget.reference("train_ff_prior") + budget.reference("classifier")
    )
    assert budget.slowdown() == pytest.approx(slowdown)
    assert 1.0 < slowdown < 60.0 / budget.reference("train_ff_prior")
    assert budget.floor("train_msp_level1") == pytest.approx(
        budget.reference("train_msp_level1") * slowdown
    )
    # The next stage's share keeps the measured floors of the stages still to come.
    left = budget.left()
    rest = ["train_msp_prior", "train_pixelcnn_prior"]
    share = budget.share("train_msp_level1", ["train_msp_level1", *rest], OTHERS)
    slack = left - budget.expected(OTHERS) - budget.floors(["train_msp_level1", *rest])
    assert share == pytest.approx(
        budget.floor("train_msp_level1")
        + slack * WEIGHTS["train_msp_level1"] / sum(WEIGHTS[s] for s in ["train_msp_level1", *rest])
    )


def test_no_time_beyond_the_floors_gives_no_share():
    clock = Clock()
    budget = TimeBudget(make_plan(1, "shapes"), earlier_seconds=0.0, clock=clock)
    clock.now += 120.0
    assert budget.share(STAGES[0], STAGES, OTHERS) == 0.0
    budget = TimeBudget(make_plan(10, "shapes"), earlier_seconds=0.0, clock=clock)
    # The FF level's first chunk took 5x its reference: so will the MSP level's, and the other
    # stages' first chunks are expected 5x slower too.
    budget.record_floor("train_ff_level1", 5 * budget.reference("train_ff_level1"))
    rest = STAGES[1:]
    floors = budget.floors(rest)
    assert floors == pytest.approx(5 * sum(budget.reference(s) for s in rest))
    # Left: the other steps, the floors of the stages left and 1 s: the stage gets its floor
    # and its weight's part of that second.
    clock.now += budget.left() - budget.expected(OTHERS) - floors - 1.0
    assert budget.share(rest[0], rest, OTHERS) == pytest.approx(
        budget.floor(rest[0]) + WEIGHTS[rest[0]] / sum(WEIGHTS[s] for s in rest)
    )
    # 2 s later there is time beyond the other steps, but not beyond the floors: no share.
    clock.now += 2.0
    assert budget.left() - budget.expected(OTHERS) > 0.0
    assert budget.share(rest[0], rest, OTHERS) == 0.0


def test_evaluation_sizes_are_cut_by_powers_of_two_until_the_steps_left_fit():
    from hvqeval.demo.plan import MIN_SCALE, SIZED, reference_key, sizes

    clock = Clock()
    plan = make_plan(3, "shapes")
    budget = TimeBudget(plan, earlier_seconds=0.0, clock=clock)
    steps = ["sample_msp", "metrics_msp", "nll_msp", "metrics_real", "study_demo-rating", "report"]
    fixed = sum(budget.reference(s) for s in steps if reference_key(s) not in SIZED)
    sized = sum(budget.reference(s) for s in steps if reference_key(s) in SIZED)
    assert budget.fit_scale(steps, 1.0) == 1.0  # plenty of time: the plan's sizes
    # Left: the fixed steps and a third of the sized.
    clock.now += plan.seconds - (fixed + sized / 3)
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
    budget.record("classifier", budget.reference("classifier"), fraction=0.5)
    assert budget.slowdown() == pytest.approx(2.0)


def test_the_floors_of_the_stages_still_to_train_are_kept_out_of_the_evaluation():
    clock = Clock()
    plan = make_plan(3, "shapes")
    budget = TimeBudget(plan, earlier_seconds=0.0, clock=clock)
    steps = ["sample_ff", "metrics_ff", "nll_ff", "report"]
    full = budget.expected(steps)
    clock.now += plan.seconds - full - 1e-6  # just enough for the evaluation at the plan's sizes
    assert budget.fit_scale(steps, 1.0) == 1.0
    # ... but not once the next model's stages need their first chunks too, nor with a margin.
    assert budget.fit_scale(steps, 1.0, ("train_msp_level1", "train_msp_prior")) < 1.0
    assert budget.fit_scale(steps, 1.0, margin=1.3) < 1.0
    assert budget.floors(("train_msp_level1",)) == budget.reference("train_msp_level1")


def test_training_chunks_shorten_towards_the_deadline():
    low, high = CHUNK_SECONDS
    assert chunk_seconds(600.0) == high  # long shares: chunks of at most 30 s
    assert chunk_seconds(24.0) == 12.0  # half of what is left, so a slowdown shows before the last
    assert chunk_seconds(3.0) == low  # not shorter than its own set-up is worth
