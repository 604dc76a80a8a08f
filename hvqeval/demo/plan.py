"""What the demo trains and how its ``--minutes`` are shared out (no torch, no CLI here).

The sizes that do not depend on the machine (samples per class, evaluation images,
classifier steps) are fixed from ``--minutes`` on the first run and saved in ``plan.json``.
Training is not a step count: each training stage gets a wall-clock share of what is left
of the budget, worked out again just before it starts from what every finished step really
took on this machine (``TimeBudget``), so a machine that gets busier midway gets fewer
training steps instead of a longer run.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "ff": [
        f"model.image_size={IMAGE_SIZE}",
        "level.0.codes.resolution=8",
        "level.0.encoder.hidden=32",
        "level.0.encoder.bottleneck=16",
        "level.0.aux_decoder.hidden=32",
        "level.0.aux_decoder.bottleneck=16",
        "level.0.modulator.hidden=32",
        "level.0.modulator.bottleneck=16",
        "level.0.training.batch_size=16",
        "prior.training.batch_size=16",
        "level.0.training.learning_rate=3e-3",
        "prior.training.learning_rate=2e-3",
    ],
}
DEMO_CARD_SETTINGS["msp"] = DEMO_CARD_SETTINGS["ff"] + [
    "level.0.aux_decoder.teacher.hidden=32",
    "level.0.aux_decoder.teacher.bottleneck=16",
    "level.0.aux_decoder.masks_per_image=8",
]
DATASET_CARD_SETTINGS: dict[str, list[str]] = {"shapes": []}  # card overrides per training dataset
NUM_CLASSES = {"shapes": 10}
DATASET_NAMES = {"shapes": "shapes data set"}
PLAN_VERSION = 4
# Training images per split: the prior's stage encodes the whole training split (and as many
# validation images) once (Algorithm 1), so the demo uses the first 4,000 (400 per class)
# instead of 50,000, and 1,000 in runs under 5 minutes, where that encoding would otherwise
# take a large part of the budget on a busy machine.
UNIFORM_BITS_PER_DIM = 8.0  # a model that gives every 8-bit sub-pixel value 1/256

# Training stages in the order they run: (step name, model key, stage flags, share weight).
# The weights are the fractions of the training time each stage gets, from measured step
# costs on 2 cores (a MSP level step also trains its teacher: 1.15x a FF one) and from what
# each needs: the prior has to learn every class's global layout and gets ~2.4x the time
# of a level (it also encodes the training split once before its first step).
TRAINING_STAGES = [
    ("train_ff_level1", "ff", ("--level", "1"), 1.0),
    ("train_ff_prior", "ff", ("--prior",), 2.4),
    ("train_msp_level1", "msp", ("--level", "1"), 1.15),
    ("train_msp_prior", "msp", ("--prior",), 2.4),
]
# Seconds the other steps take on an idle 2-core machine with the plan of a short run
# (measured); only their proportions matter: they are scaled by how much slower the finished
# steps of this run were than their own figure here (``TimeBudget.slowdown``).
REFERENCE_SECONDS = {
    "classifier": 12.0,
    "sample": 1.0,
    "reconstruct": 1.0,
    "metrics": 2.0,
    "nll": 2.5,
    "neighbours": 1.0,
    "metrics_real": 2.0,
    "study": 1.0,
    "report": 1.0,
}
MIN_STAGE_STEPS = 5  # a stage always trains a few steps, so that every later step has a model


class DemoError(HvqevalError):
    """The demo cannot run with these options (or its folder holds another plan)."""


@dataclass(frozen=True)
class DemoPlan:
    """Sizes fixed on the first run so that reruns continue the same work."""

    version: int
    data: str
    minutes: float
    classifier_steps: int
    per_class: int
    study_per_class: int
    evaluation_images: int  # reference images for FID; a fifth of it held-out images for the NLL
    train_images: int  # first N images of each split the models train on
    classifier_batch: int
    classifier_val: int  # validation images for the classifier's accuracy

    @property
    def seconds(self) -> float:
        return 60.0 * self.minutes


def make_plan(minutes: float, data: str) -> DemoPlan:
    per_class = 4 if minutes < 3 else 10 if minutes < 10 else 20
    return DemoPlan(
        version=PLAN_VERSION,
        data=data,
        minutes=minutes,
        # 60 steps reach ~90% validation accuracy on shapes at 16x16, 300 ~100%. The classifier
        # is the largest step with a fixed size: on a heavily shared 2-core machine 300 steps
        # took 6 minutes, so it grows only with long budgets. The real images are scored with the
        # same classifier, so a weaker one still gives honest reference values.
        classifier_steps=60 if minutes < 10 else 120 if minutes < 30 else 300,
        per_class=per_class,
        study_per_class=min(per_class, 10),
        evaluation_images=1000 if minutes < 3 else 5000,
        train_images=1000 if minutes < 5 else 4000,
        classifier_batch=32 if minutes < 10 else 64,
        classifier_val=500 if minutes < 5 else 2000,
    )


def train_args(plan: DemoPlan) -> list[str]:
    return ["--workers", "0", "--limit", str(plan.train_images)]


def reference_key(step: str) -> str:
    """``metrics_ff`` -> ``metrics``; ``study_demo-rating`` -> ``study``."""
    if step in REFERENCE_SECONDS:
        return step
    return step.split("_")[0]


class TimeBudget:
    """Shares out ``--minutes``: what is left, minus the expected cost of the other steps left,
    goes to the training stages left in proportion to their weights.

    ``spent`` counts the steps finished by earlier runs of the same folder (their recorded
    seconds) plus this run's wall-clock time, so a resumed demo keeps to the first run's budget
    (time lost in an interrupted step is not counted again).
    """

    def __init__(self, plan: DemoPlan, earlier_seconds: float, clock):
        self.plan = plan
        self.earlier_seconds = earlier_seconds
        self.clock = clock
        self.started = clock()
        self.measured: dict[str, float] = {}  # step -> seconds, other steps finished in this run

    def spent(self) -> float:
        return self.earlier_seconds + self.clock() - self.started

    def left(self) -> float:
        return self.plan.seconds - self.spent()

    def record(self, step: str, seconds: float) -> None:
        if reference_key(step) in REFERENCE_SECONDS:
            self.measured[step] = seconds

    def slowdown(self) -> float:
        """How much slower than on the idle reference machine this run's other steps were
        (1.0 before any was measured)."""
        if not self.measured:
            return 1.0
        reference = sum(REFERENCE_SECONDS[reference_key(s)] for s in self.measured)
        return max(sum(self.measured.values()) / reference, 0.25)

    def expected(self, steps: list[str]) -> float:
        """Expected seconds of the other steps ``steps`` (not yet done): a step of a model
        whose twin ran in this run (``metrics_ff`` for ``metrics_msp``) is expected to take what
        the twin took; the rest their reference figure times the slowdown."""
        total, slowdown = 0.0, self.slowdown()
        for step in steps:
            twin = next(
                (
                    s
                    for s in self.measured
                    if reference_key(s) == reference_key(step)
                    and reference_key(step)
                    in ("sample", "reconstruct", "metrics", "nll", "neighbours")
                ),
                None,
            )
            total += (
                self.measured[twin] if twin else REFERENCE_SECONDS[reference_key(step)] * slowdown
            )
        return total

    def share(self, stage: str, stages_left: list[str], other_steps_left: list[str]) -> float:
        """Seconds for training stage ``stage`` (the first of ``stages_left``)."""
        weights = {name: weight for name, _, _, weight in TRAINING_STAGES}
        training = self.left() - self.expected(other_steps_left)
        return max(training, 0.0) * weights[stage] / sum(weights[s] for s in stages_left)
