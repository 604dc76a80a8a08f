"""What the demo trains and how its ``--minutes`` are shared out (no torch, no CLI here).

The planned sizes (samples per class, evaluation images, classifier steps) are fixed from
``--minutes`` on the first run and saved in ``plan.json``. Nothing that trains is a fixed
step count: the classifier stops at CLASSIFIER_SHARE of the budget, and each training stage
gets a wall-clock share of what is left, worked out again just before it starts from what
every finished step really took on this machine (``TimeBudget``), so a machine that gets
busier midway gets fewer training steps instead of a longer run. Evaluation sizes shrink the
same way: before each sized step the steps left must fit what is left (``fit_scale``), or
the sizes are halved until they do (``sizes``).

What cannot shrink is the floor: each stage's first chunk (MIN_STAGE_STEPS steps with the
model's and the data's set-up), the evaluation at the smallest sizes, the studies and the
report. Every plan counts it at this machine's present speed: measured where a step of the same
kind has run in this run, else a reference figure times the slowdown so far (``floor``,
``expected``), so the shares and the cuts of hvqeval.demo.cuts are made before the floor
would push the run past ``--minutes``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hvqeval.errors import HvqevalError

CARDS = {"ff": "tiny_ff", "msp": "tiny_msp"}  # the two-level hierarchies
# The single-level baseline (Appendix D): a gated PixelCNN on pixels, a Table 1 row beside them.
BASELINE = {"pixelcnn": "tiny_pixelcnn"}
MODELS = {**CARDS, **BASELINE}
LABELS = {"ff": "FF", "msp": "MSP", "pixelcnn": "PixelCNN"}
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
# The baseline at 16x16 and a third of its width: at the card's width a step took ~6.6 s on a
# heavily shared 2-core machine, so it would get a handful of steps in the demo's time.
DEMO_CARD_SETTINGS["pixelcnn"] = [
    f"model.image_size={IMAGE_SIZE}",
    "prior.hidden=32",
    "prior.residual_hidden=64",
    "prior.layers=4",
    "prior.training.batch_size=16",
    "prior.training.learning_rate=2e-3",
]
DATASET_CARD_SETTINGS: dict[str, list[str]] = {"shapes": []}  # card overrides per training dataset
NUM_CLASSES = {"shapes": 10}
DATASET_NAMES = {"shapes": "shapes data set"}
PLAN_VERSION = 6
# Training images per split: the prior's stage encodes the whole training split (and as many
# validation images) once (Algorithm 1), so the demo uses the first 4,000 (400 per class)
# instead of 50,000, 1,000 in runs under 5 minutes and 400 under 4, where that encoding
# would otherwise take a large part of the budget on a busy machine (a 5-step prior stage
# took 50 s with 1,000 at load average 5).
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
    ("train_pixelcnn_prior", "pixelcnn", ("--prior",), 1.0),
]
# The temperature sweep: a few values on one model, sampled and scored like its samples.
SWEEP_MODEL = "msp"
SWEEP_VALUES = "0.9,1.1"
# Extras that are left out, whole, when what is left of the budget cannot pay for them and the
# steps every report needs (decided at the group's first step; the report says so).
OPTIONAL = {
    "the temperature sweep": ("sweep_msp", "plot_temperature"),
    "the PixelCNN baseline": (
        "train_pixelcnn_prior",
        "sample_pixelcnn",
        "metrics_pixelcnn",
        "nll_pixelcnn",
    ),
}
# The domain classifier trains for at most this share of --minutes: under heavy load its 60
# steps took 394 s, more than a 3-minute demo's whole budget.
CLASSIFIER_SHARE = 0.08
# Seconds the other steps take with one torch thread on a free core (their CPU seconds, measured
# on a 2-core Intel Xeon) with the plan of REFERENCE_MINUTES, scaled to a run's plan by the work
# its sizes ask for (``work``); what a run expects is this times how much slower its finished
# steps were than their own figure here (``TimeBudget.slowdown``).
REFERENCE_MINUTES = 6
REFERENCE_SECONDS = {
    "classifier": 2.0,
    "sample": 1.4,
    "reconstruct": 0.3,
    "metrics": 2.2,  # the first model's: the FID reference's features are then cached
    "nll": 3.9,
    "neighbours": 0.8,
    "metrics_real": 2.8,
    "study": 0.5,
    "report": 1.9,
    "sweep": 2.7,
    "plot": 0.8,
}
# Steps whose time grows with the evaluation sizes (samples per class, NLL images): when what is
# left of the budget cannot pay for them at the plan's sizes, the sizes are cut by a power of 2
# (``TimeBudget.fit_scale``), down to MIN_SCALE; the report says what was cut. The sizes that
# Table 1 compares (samples per class, NLL images) are fixed at the first model's evaluation,
# with EVALUATION_MARGIN on the estimate (the later models' steps are not yet measured), so
# every model gets the same; only the sweep's samples per class shrink later.
EVALUATION_MARGIN = 1.3
SIZED = {"sample", "metrics", "nll", "metrics_real", "sweep"}
MIN_SCALE = 1 / 16
# Share of the classifier's time that does not shrink with its steps (data set-up and the
# validation pass: measured 0.26 with 200 validation images, 0.5 with 2,000), for reading a
# classifier stopped by its time share as a speed measurement.
CLASSIFIER_FIXED = 0.4
# A stage's first chunk: this many steps, which is all a stage trains when the budget leaves it
# no share. Its first step pays for the warm-up, the second gives a speed to size the next chunk
# from; one step would be enough for a model to exist, but not to measure.
MIN_STAGE_STEPS = 2
# Seconds of a stage's first chunk (MIN_STAGE_STEPS steps, with building the model and the data
# and, for a prior, encoding the training and validation images to codes) with one thread on a
# free core, with the plan of REFERENCE_MINUTES (4,000 training images; the prior's encoding
# grows with them: ``work``). A stage costs at least this times the slowdown however short its
# share, so the shares keep it for the stages still to come until a stage of the same kind has
# run (``TimeBudget.floor``).
STAGE_FLOOR_SECONDS = {
    "train_ff_level1": 0.4,
    "train_ff_prior": 2.4,
    "train_msp_level1": 0.4,
    "train_msp_prior": 2.4,
    "train_pixelcnn_prior": 0.2,
}
# Training chunks last half of what is left of the stage's share, within these seconds: they
# shorten towards the deadline, so a machine that gets busier midway shows up in a short chunk
# before the last, which is sized to end at the deadline; 5 s keeps a chunk's set-up (building
# the model, reading and writing the checkpoint) a small part of it.
CHUNK_SECONDS = (5.0, 30.0)


def chunk_seconds(share_left: float) -> float:
    """Seconds the next training chunk may last with ``share_left`` seconds of the share left."""
    low, high = CHUNK_SECONDS
    return min(max(share_left / 2, low), high)


def stage_kind(stage: str) -> tuple[str, ...]:
    """Stages of one kind cost alike: the levels of the hierarchies (``("--level", "1")``), their
    priors (``("--prior",)``); the baseline is a kind of its own."""
    for name, key, flags, _ in TRAINING_STAGES:
        if name == stage:
            return flags if key in CARDS else (key, *flags)
    raise KeyError(stage)


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
        evaluation_images=1000 if minutes < 5 else 5000,
        train_images=400 if minutes < 4 else 1000 if minutes < 5 else 4000,
        classifier_batch=32 if minutes < 10 else 64,
        classifier_val=200 if minutes < 4 else 500 if minutes < 5 else 2000,
    )


def train_args(plan: DemoPlan) -> list[str]:
    return ["--workers", "0", "--limit", str(plan.train_images)]


def sizes(plan: DemoPlan, scale: float) -> dict[str, int]:
    """Evaluation sizes at ``scale`` (1.0: the plan's): samples per class for sampling and the
    sweep, held-out images for the NLL. The FID reference stays the plan's, so every model's FID
    is against the same images."""
    per_class = max(2, round(plan.per_class * scale))  # 2: pairwise studies need 2 distinct pairs
    return {
        "per_class": per_class,
        "sweep_per_class": max(2, per_class // 2),
        "nll_images": max(20, int(plan.evaluation_images // 5 * scale)),
    }


def reference_key(step: str) -> str:
    """``metrics_ff`` -> ``metrics``; ``study_demo-rating`` -> ``study``."""
    if step in REFERENCE_SECONDS:
        return step
    return step.split("_")[0]


def work(key: str, plan: DemoPlan) -> float:
    """The work step ``key`` (a ``reference_key`` or a training stage) does with ``plan``, as a
    multiple of its work with the plan of REFERENCE_MINUTES."""
    ref = make_plan(REFERENCE_MINUTES, plan.data)
    if key in ("sample", "sweep"):
        return plan.per_class / ref.per_class
    if key in ("metrics", "metrics_real", "nll"):  # the FID reference, the NLL's held-out images
        return plan.evaluation_images / ref.evaluation_images
    if key == "neighbours":
        return plan.train_images / ref.train_images
    if key == "classifier":  # training images seen and validation images
        return (plan.classifier_steps * plan.classifier_batch + plan.classifier_val) / (
            ref.classifier_steps * ref.classifier_batch + ref.classifier_val
        )
    if key in STAGE_FLOOR_SECONDS and stage_kind(key) == ("--prior",):
        return 0.2 + 0.8 * plan.train_images / ref.train_images  # the encoding is most of it
    return 1.0


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
        self.fractions: dict[str, float] = {}  # step -> share of its reference work it did
        self.scales: dict[str, float] = {}  # step -> evaluation scale it ran at
        self.stage_floors: dict[str, float] = {}  # training stage -> seconds of its first chunk

    def spent(self) -> float:
        return self.earlier_seconds + self.clock() - self.started

    def left(self) -> float:
        return self.plan.seconds - self.spent()

    def record(self, step: str, seconds: float, fraction: float = 1.0, scale: float = 1.0) -> None:
        """``fraction``: the share of its reference work the step did (a classifier stopped by
        its time share); ``scale``: the evaluation scale it ran at."""
        if reference_key(step) in REFERENCE_SECONDS:
            self.measured[step] = seconds
            self.fractions[step] = fraction
            self.scales[step] = scale

    def reference(self, step: str) -> float:
        """Seconds ``step`` (or a training stage's first chunk) takes with one thread on a free
        core of the reference machine, with this run's plan at the plan's sizes."""
        if step in STAGE_FLOOR_SECONDS:
            return STAGE_FLOOR_SECONDS[step] * work(step, self.plan)
        key = reference_key(step)
        return REFERENCE_SECONDS[key] * work(key, self.plan)

    def record_floor(self, stage: str, seconds: float) -> None:
        """What training stage ``stage``'s first chunk took (``STAGE_FLOOR_SECONDS``)."""
        self.stage_floors[stage] = seconds

    def slowdown(self) -> float:
        """How much slower than one thread on a free core of the reference machine this run's
        finished steps were: the other steps and the training stages' first chunks (1.0 before
        any was measured)."""
        if not self.measured and not self.stage_floors:
            return 1.0
        reference = sum(
            self.reference(s) * self.fractions.get(s, 1.0) for s in self.measured
        ) + sum(self.reference(s) for s in self.stage_floors)
        took = sum(self.measured.values()) + sum(self.stage_floors.values())
        return max(took / reference, 0.25)

    def expected_parts(self, steps: list[str]) -> tuple[float, float]:
        """Expected seconds of the other steps ``steps`` (not yet done), as (fixed, sized at
        scale 1): a step of a model whose twin ran in this run (``metrics_ff`` for
        ``metrics_msp``; the latest twin) is expected to take what the twin took (divided by the twin's scale if
        sized); the rest their reference figure times the slowdown."""
        fixed = sized = 0.0
        slowdown = self.slowdown()
        for step in steps:
            key = reference_key(step)
            twin = next(
                (
                    s
                    for s in reversed(self.measured)  # the latest: the present speed and caches
                    if reference_key(s) == key
                    and key in ("sample", "reconstruct", "metrics", "nll", "neighbours")
                ),
                None,
            )
            if key in SIZED:
                sized += (
                    self.measured[twin] / self.scales[twin]
                    if twin
                    else self.reference(step) * slowdown
                )
            else:
                fixed += self.measured[twin] if twin else self.reference(step) * slowdown
        return fixed, sized

    def expected(self, steps: list[str], scale: float = 1.0) -> float:
        fixed, sized = self.expected_parts(steps)
        return fixed + sized * scale

    def fit_scale(
        self, steps: list[str], scale: float, stages_left: tuple[str, ...] = (), margin: float = 1.0
    ) -> float:
        """The largest evaluation scale, ``scale`` or a power-of-2 cut of it (not below
        MIN_SCALE), at which ``steps`` (``margin`` times their expected time) and the floors of
        the training stages ``stages_left`` are expected to end within what is left."""
        fixed, sized = self.expected_parts(steps)
        reserve = self.floors(stages_left)
        while scale > MIN_SCALE and margin * (fixed + sized * scale) + reserve > self.left():
            scale /= 2
        return scale

    def floor(self, stage: str) -> float:
        """Seconds training stage ``stage`` takes at least on this machine now: what its first
        chunk took if it ran; else what the first chunk of a stage of its kind took in this run
        (``stage_kind``; scaled by their reference figures); else its reference figure times
        the slowdown."""
        if stage in self.stage_floors:
            return self.stage_floors[stage]
        twin = next((s for s in self.stage_floors if stage_kind(s) == stage_kind(stage)), None)
        if twin is not None:
            return self.stage_floors[twin] * self.reference(stage) / self.reference(twin)
        return self.reference(stage) * self.slowdown()

    def floors(self, stages: tuple[str, ...] | list[str]) -> float:
        """Seconds the training ``stages`` take at least on this machine now."""
        return sum(self.floor(s) for s in stages)

    def share(
        self, stage: str, stages_left: list[str], other_steps_left: list[str], scale: float = 1.0
    ) -> float:
        """Seconds for training stage ``stage`` (the first of ``stages_left``): its floor, plus
        its weight's part of what is left after the other steps and every stage's floor; 0
        when nothing is left beyond them."""
        weights = {name: weight for name, _, _, weight in TRAINING_STAGES}
        floors = {s: self.floor(s) for s in stages_left}
        training = self.left() - self.expected(other_steps_left, scale) - sum(floors.values())
        if training <= 0:
            return 0.0  # no slack: the stage trains its MIN_STAGE_STEPS only, at whatever they cost
        return floors[stage] + training * weights[stage] / sum(weights[s] for s in stages_left)
