"""Building a study's catch and practice items at create time (attention checks; ``checks.py``
hands them out).

A catch item is an image against a visibly corrupted copy of it (pairwise: the right answer is
the uncorrupted image, side "a"), or the corrupted copy alone (rating: the right answer is a
rating of at most ``checks.PASS_RATING_MAX``). The images are ones no counted task shows (images of
the study's classes beyond --per-class / --count, real ones when the study has real images), so a
check never tells a rater the answer to a counted task. Practice items are built the same way and
shown first, labelled as practice. The corrupted copies are written once, from the study seed,
as a sample set of the study's own (``<storage>/studies/<study>/checks/``, a ``manifest.json`` with each
file's sha256) and stored like any study image. Every catch/practice item has one slot, filled
from the start: the claim of counted tasks never picks it, so catch and practice items never
count toward the k answers of a counted item.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study_app import handout
from study_app.errors import StudyError
from study_app.sample_sets import FORMAT_VERSION, MANIFEST_NAME, sha256_file

CHECK_SOURCE_LABEL = "check:corrupted"  # ':' never occurs in a source label given by --source
NOISE_SIGMA = 70.0  # heavy Gaussian noise, in 0-255 grey levels
BLOCK_GRID = 4  # the image is cut into 4x4 cells ...
BLOCKED_CELLS = 6  # ... and this many of them are blacked out


@dataclass(frozen=True)
class Original:
    """One study image a catch or practice item is made from."""

    image_id: int
    path: Path  # the file on disk
    class_id: int
    class_name: str
    image_size: int


MAX_CATCH_FRACTION = 0.5  # beyond this checks outnumber the tasks they check


def check_settings(
    catch_fraction: float, practice: int, exposure_ms: int | None, tasks_per_rater: int
) -> None:
    """One StudyError line for a catch fraction outside [0, MAX_CATCH_FRACTION], practice
    outside [0, tasks_per_rater] or exposure <= 0."""
    if not 0.0 <= catch_fraction <= MAX_CATCH_FRACTION or math.isnan(catch_fraction):
        raise StudyError(
            f"--catch-fraction {catch_fraction}: give a fraction from 0 (no catch items) to "
            f"{MAX_CATCH_FRACTION} (as many catch items as tasks), e.g. 0.1"
        )
    if not 0 <= practice <= tasks_per_rater:
        raise StudyError(
            f"--practice {practice}: give 0 to {tasks_per_rater} (--tasks-per-rater) practice "
            "items, e.g. 2"
        )
    if exposure_ms is not None and exposure_ms <= 0:
        raise StudyError(
            f"--exposure-ms {exposure_ms}: give a positive number of milliseconds, or leave it out "
            "for no limit"
        )


def catch_count(catch_fraction: float, tasks_per_rater: int) -> int:
    """Catch items per rater: the fewest that make up at least ``catch_fraction`` of the rater's
    counted + catch answers (0 when the fraction is 0)."""
    if catch_fraction <= 0:
        return 0
    return math.ceil(catch_fraction * tasks_per_rater / (1.0 - catch_fraction) - 1e-9)


def corrupt(pixels: np.ndarray, seed: int) -> np.ndarray:
    """A visibly corrupted copy of ``pixels`` (H, W, 3) uint8: heavy noise and black blocks."""
    rng = np.random.default_rng(seed)
    out = pixels.astype(np.float64) + rng.normal(0.0, NOISE_SIGMA, pixels.shape)
    h, w = pixels.shape[:2]
    for cell in rng.choice(BLOCK_GRID * BLOCK_GRID, BLOCKED_CELLS, replace=False):
        r, c = divmod(int(cell), BLOCK_GRID)
        out[
            r * h // BLOCK_GRID : (r + 1) * h // BLOCK_GRID,
            c * w // BLOCK_GRID : (c + 1) * w // BLOCK_GRID,
        ] = 0.0
    return np.clip(out, 0, 255).astype(np.uint8)


def pick_originals(candidates: list, count: int, seed: int, sources: list[str]) -> list:
    """``count`` of the candidate images (none of them in a counted task) drawn with the study
    seed (a separate stream: the designs of studies without checks do not change); each used
    once while there are enough, then again (each copy is corrupted with noise of its own)."""
    if count and not candidates:
        raise StudyError(
            f"catch or practice items were asked for, but there is no image to corrupt: every "
            f"image of the study's classes in {', '.join(sources)} is in a counted task, and "
            "check items use only images no counted task shows; add images, lower --per-class "
            "/ --count, or leave out --catch-fraction / --practice"
        )
    rng = random.Random(f"{seed}:checks")
    picked: list = []
    while len(picked) < count:
        picked += rng.sample(candidates, min(len(candidates), count - len(picked)))
    return picked


def write_corrupted(originals: list[Original], folder: Path, seed: int) -> list[tuple[str, str]]:
    """Write the corrupted copies as a sample set at ``folder``: [(file, sha256)] in order."""
    from PIL import Image as PILImage

    if folder.exists() and any(folder.iterdir()):
        raise StudyError(
            f"{folder} already holds files; remove it or choose another --name for the study"
        )
    folder.mkdir(parents=True, exist_ok=True)
    written, entries = [], []
    for n, original in enumerate(originals):
        with PILImage.open(original.path) as img:
            pixels = np.asarray(img.convert("RGB"))
        name = f"corrupted-{n:04d}.png"
        PILImage.fromarray(corrupt(pixels, seed * 1_000_003 + n)).save(folder / name)
        digest = sha256_file(folder / name)
        written.append((name, digest))
        entries.append(
            {
                "file": name,
                "class_id": original.class_id,
                "class_name": original.class_name,
                "sha256": digest,
            }
        )
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": CHECK_SOURCE_LABEL,
        "image_size": originals[0].image_size if originals else 0,
        "files": entries,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return written


def add_check_items(
    session,
    study,
    originals: list[Original],
    catch_items: int,
    practice_items: int,
    first_number: int,
    folder: Path,
) -> None:
    """Insert the study's practice items, then its catch items (numbered from ``first_number``),
    made from ``originals`` (``pick_originals``' choice, one each), with their corrupted images
    and one filled slot each."""
    from sqlalchemy import insert

    from study_app.schema import Image, Item, Slot, Source

    total = catch_items + practice_items
    if total == 0:
        return
    written = write_corrupted(originals, folder, study.seed)
    manifest_sha = hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()
    source = Source(
        study_id=study.id,
        label=CHECK_SOURCE_LABEL,
        is_real=False,
        dataset=None,
        path=str(folder.resolve()),
        sample_set_id=f"checks-{study.name}",
        manifest_sha256=manifest_sha,
    )
    session.add(source)
    session.flush()
    image_rows = [
        {
            "study_id": study.id,
            "source_id": source.id,
            "token": handout.new_token(),
            "file": file,
            "sha256": digest,
            "class_id": o.class_id,
            "class_name": o.class_name,
            "is_example": False,
        }
        for o, (file, digest) in zip(originals, written)
    ]
    corrupted_ids = session.scalars(
        insert(Image).returning(Image.id, sort_by_parameter_order=True), image_rows
    ).all()
    roles = ["practice"] * practice_items + ["catch"] * catch_items
    item_rows = [
        {
            "study_id": study.id,
            "number": first_number + n,
            "class_id": o.class_id,
            "class_name": o.class_name,
            # pairwise: A is the original, B its corrupted copy; rating: the corrupted copy
            "image_a_id": o.image_id if study.kind == "pairwise" else bad,
            "image_b_id": bad if study.kind == "pairwise" else None,
            "role": role,
        }
        for n, (o, bad, role) in enumerate(zip(originals, corrupted_ids, roles))
    ]
    item_ids = session.scalars(
        insert(Item).returning(Item.id, sort_by_parameter_order=True), item_rows
    ).all()
    session.execute(
        insert(Slot),
        [
            {"study_id": study.id, "item_id": i, "slot_no": 0, "shuffle": 0, "filled": True}
            for i in item_ids
        ],
    )
