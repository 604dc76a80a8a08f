"""Writing a new study's rows, in the one transaction of ``create._build``.

    study ─┬─ source ── image   every image drawn: tasks, examples, check originals
           ├─ item              one per image (rating) or per pair of images (pairwise)
           └─ slot              k per item: the places the k answers fill (``assign.py``)

Image and item ids come back from bulk ``INSERT … RETURNING`` in the order of the rows given.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import asdict

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study_app import catch_items
from study_app.assign import utcnow
from study_app.draw import FileEntry, class_of
from study_app.errors import StudyExistsError
from study_app.handout import new_token
from study_app.sample_sets import SampleSetFiles
from study_app.schema import Image, Item, Slot, Source, Study
from study_app.source_pairs import design_seed, pair_design
from study_app.study_cards import StudySettings

# (source index, file) -> image id
ImageIds = dict[tuple[int, str], int]


def insert_study(session: Session, settings: StudySettings, question: str) -> Study:
    study = Study(
        name=settings.name,
        public_id=secrets.token_urlsafe(12),
        kind=settings.kind,
        status="open",
        question=question,
        answers_per_item=settings.answers_per_item,
        tasks_per_rater=settings.tasks_per_rater,
        lease_seconds=settings.lease_seconds,
        seed=settings.seed,
        settings_json=json.dumps(asdict(settings)),
        created_at=utcnow(),
        completion_code=settings.completion_code,
        completion_url=settings.completion_url,
        catch_items=catch_items.catch_count(settings.catch_fraction, settings.tasks_per_rater),
        practice_items=settings.practice,
        exposure_ms=settings.exposure_ms,
    )
    session.add(study)
    try:
        session.flush()
    except IntegrityError:  # made by another create since the name was checked
        raise StudyExistsError(
            f"a study named {settings.name!r} already exists; choose another --name"
        ) from None
    return study


def _insert_source(
    session: Session, study: Study, src: SampleSetFiles, images: list[tuple]
) -> list[tuple[str, int]]:
    """One source and its images ``(file, sha256, class name, class, is example)``; returns
    (file, image id) in the order given."""
    row = Source(
        study_id=study.id,
        label=src.label,
        is_real=src.dataset is not None,
        dataset=src.dataset,
        path=str(src.path),
        sample_set_id=src.sample_set_id,
        manifest_sha256=src.manifest_sha256,
    )
    session.add(row)
    session.flush()
    rows = [
        {
            "study_id": study.id,
            "source_id": row.id,
            "token": new_token(),
            "file": f,
            "sha256": h,
            "class_id": cid,
            "class_name": cname,
            "is_example": is_example,
        }
        for (f, h, cname, cid, is_example) in images
    ]
    ids = session.scalars(
        insert(Image).returning(Image.id, sort_by_parameter_order=True), rows
    ).all()
    return [(r["file"], i) for r, i in zip(rows, ids)]


def insert_images(
    session: Session,
    study: Study,
    loaded: list[SampleSetFiles],
    classes: list[int],
    chosen: dict[tuple[int, int], list[FileEntry]],
    examples: dict[int, list[FileEntry]],
    check_files: list[tuple],
    example_sources: list[SampleSetFiles],
) -> ImageIds:
    """Every source with its examples, the images of its tasks and those only a check item
    shows; then the real examples' own sample set, if any (examples only)."""
    image_ids: ImageIds = {}
    for s_index, src in enumerate(loaded):
        images = [(f, h, n, class_of(src, f), True) for f, h, n in examples[s_index]]
        images += [(f, h, n, c, False) for c in classes for f, h, n in chosen[(s_index, c)]]
        stored = {f for f, *_ in images}
        only_checks = {(f, h, n, c) for i, f, h, n, c in check_files if i == s_index}
        images += [(f, h, n, c, False) for f, h, n, c in sorted(only_checks) if f not in stored]
        for file, image_id in _insert_source(session, study, src, images):
            image_ids.setdefault((s_index, file), image_id)
    for src in example_sources:
        files = [
            (f, h, n, class_of(src, f), True) for fs in src.by_class.values() for f, h, n in fs
        ]
        _insert_source(session, study, src, files)
    return image_ids


def insert_items(
    session: Session,
    study: Study,
    settings: StudySettings,
    loaded: list[SampleSetFiles],
    classes: list[int],
    chosen: dict[tuple[int, int], list[FileEntry]],
    compared: list[tuple[int, int]],
    image_ids: ImageIds,
) -> list[int]:
    """The items, class by class: one per chosen image (rating), or the pairs of each compared
    pair of sources' design (pairwise, ``source_pairs.py``). Returns their ids in order."""
    item_rows = []  # (class, class name, image a id, image b id or None)
    for c in classes:
        if settings.kind == "rating":
            for s_index in range(len(loaded)):
                for f, _h, cname in chosen[(s_index, c)]:
                    item_rows.append((c, cname, image_ids[(s_index, f)], None))
            continue
        for p_index, (x, y) in enumerate(compared):
            files_a, files_b = chosen[(x, c)], chosen[(y, c)]
            design = pair_design(
                len(files_a),
                len(files_b),
                (loaded[x].label, loaded[y].label),
                settings.uses,
                settings.pairs_per_class,
                design_seed(settings.seed, c, p_index),
            )
            for ia, ib in design.pairs:
                image_a, image_b = image_ids[(x, files_a[ia][0])], image_ids[(y, files_b[ib][0])]
                item_rows.append((c, files_a[ia][2], image_a, image_b))
    rows = [
        {
            "study_id": study.id,
            "number": n + 1,
            "class_id": c,
            "class_name": cname,
            "image_a_id": a,
            "image_b_id": b,
        }
        for n, (c, cname, a, b) in enumerate(item_rows)
    ]
    return session.scalars(
        insert(Item).returning(Item.id, sort_by_parameter_order=True), rows
    ).all()


def insert_slots(
    session: Session, study: Study, item_ids: list[int], k: int, rng: random.Random
) -> None:
    """k slots per item; ``shuffle`` orders the free slots of one round (``assign.CLAIM_SLOT``)."""
    slots = [
        {
            "study_id": study.id,
            "item_id": i,
            "slot_no": s,
            "shuffle": rng.randrange(2**31),
            "filled": False,
        }
        for i in item_ids
        for s in range(k)
    ]
    session.execute(insert(Slot), slots)
