"""How far the demo's models are from what good looks like, in plain words.

Reference values beside each model's numbers: the real images' own IS and FID, scored with
the same classifier, number of images and reference split as the samples (what a perfect
model would get with these settings), and a uniform model's 8 bits per sub-pixel (what a
model that learnt nothing gets). A model far from them gets a warning that says so, with
the training steps it got, instead of numbers a reader has to know how to read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hvqeval.demo.plan import CARDS, LABELS, TRAINING_STAGES, UNIFORM_BITS_PER_DIM

# "Far" means: IS less than half as far above 1 (its least value: every image gives the same
# class probabilities) as the real images' IS; FID more than twice the real images' FID
# plus 10 (FID of two samples of the same images is not 0 at these n); a joint NLL that saves
# less than a quarter of the uniform model's bits (above 6 of 8 bits per sub-pixel).
IS_FRACTION = 0.5
FID_FACTOR, FID_MARGIN = 2.0, 10.0
NLL_FRACTION = 0.75


@dataclass
class ModelQuality:
    label: str
    card: str
    steps: dict[str, int]  # stage ("level1", "prior") -> training steps it got
    isc: float | None = None
    fid: float | None = None
    nll_bpd: float | None = None
    real_isc: float | None = None
    real_fid: float | None = None
    uniform_bpd: float = UNIFORM_BITS_PER_DIM
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One console line: the model, its steps, and either the warnings or that it is close."""
        steps = ", ".join(f"{n} {stage} steps" for stage, n in self.steps.items())
        if self.warnings:
            return f"{self.label}: FAR FROM GOOD after {steps}: " + "; ".join(self.warnings)
        return f"{self.label}: close to the reference values after {steps}"


def latest_values(results: Path) -> dict[tuple[str, str], float]:
    """(model, metric) -> the value of its latest row in results.jsonl."""
    found: dict[tuple[str, str], float] = {}
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                found[(row.get("model"), row["metric"])] = row["value"]
    return found


def assess(results: Path, steps: dict[str, Any], real_label: str) -> list[ModelQuality]:
    values = latest_values(results)
    real_isc, real_fid = values.get((real_label, "isc")), values.get((real_label, "fid"))
    out = []
    for key, card in CARDS.items():
        got = {
            name.rsplit("_", 1)[1]: steps[name]["step"]
            for name, stage_key, _, _ in TRAINING_STAGES
            if stage_key == key and name in steps and "step" in steps[name]
        }
        q = ModelQuality(
            LABELS[key],
            card,
            got,
            values.get((card, "isc")),
            values.get((card, "fid")),
            values.get((card, "nll_bpd")),
            real_isc,
            real_fid,
        )
        if q.isc is not None and real_isc is not None and q.isc - 1 < IS_FRACTION * (real_isc - 1):
            q.warnings.append(
                f"IS {q.isc:.2f} against {real_isc:.2f} for real images: "
                "its samples are mostly not recognisable as their classes"
            )
        if (
            q.fid is not None
            and real_fid is not None
            and q.fid > FID_FACTOR * real_fid + FID_MARGIN
        ):
            q.warnings.append(
                f"FID {q.fid:.1f} against {real_fid:.1f} for real images: "
                "its samples look unlike the data"
            )
        if q.nll_bpd is not None and q.nll_bpd > NLL_FRACTION * UNIFORM_BITS_PER_DIM:
            near = "no better than" if q.nll_bpd >= UNIFORM_BITS_PER_DIM else "near"
            q.warnings.append(
                f"{q.nll_bpd:.2f} bits/dim, {near} a uniform model's "
                f"{UNIFORM_BITS_PER_DIM:g}: it has learnt little of the pixels"
            )
        out.append(q)
    return out


ADVICE = (
    "these models are cut short by the time budget; for recognisable samples give the demo "
    "more time (e.g. --minutes 60) in a new --out folder"
)
