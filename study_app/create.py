"""Creating studies from sample sets (paper Appendix G).

A study is built from *sources*: sample sets imported by reference (``manifest.json`` + files,
each file checked against its sha256 and decoded once; see ``sample_sets.py``). Real images
reach a study as a sample set too: the CLI writes them (``hvqeval study create ... --real``,
same preprocessing as training) and passes the folder with the data set's name.

Per class, ``per_class`` images of every source are drawn (seeded; ``counts`` gives a source
another number). Rating studies make one item per image; pairwise studies compare M >= 2
sources, all pairs or those listed, with the designs of ``source_pairs.py`` / ``pairing.py``.
Every item gets k slots (k = answers per item).

What the study shows is drawn in ``draw.py`` and written in ``study_rows.py``; this module
checks the settings, claims the study's name and folder, and runs both in one transaction.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

from sqlalchemy import select

from study_app import catch_items
from study_app.db import make_engine, normalise_url, session_scope, sqlite_path, upgrade
from study_app.draw import (
    check_distinct_sources,
    choose_classes,
    draw_check_originals,
    draw_images,
    examples_source,
    load_source,
    question_of,
)
from study_app.errors import StudyError, StudyExistsError
from study_app.platforms import origin
from study_app.schema import Study
from study_app.source_pairs import pair_design, source_pairs
from study_app.study_cards import SourceSpec, StudySettings, StudySummary
from study_app.study_rows import insert_images, insert_items, insert_slots, insert_study

# The cards a study is created from (study_cards.py) are public here too, with the function
# that takes them.
__all__ = [
    "SourceSpec",
    "StudySettings",
    "StudySummary",
    "check_completion",
    "check_name",
    "claim_folder",
    "create_study",
    "study_folder",
]


def check_name(name: str) -> None:
    """A study name is also the name of its folder in the instance folder: letters, digits,
    '-' and '_' only (no path), 1-100 of them."""
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum():
        raise StudyError(f"study name {name!r}: use 1-100 letters, digits, '-' or '_'")


def study_folder(storage_dir: str | Path, name: str) -> Path:
    """The folder of a study's own images (real images drawn from a dataset, check items) in
    the instance folder."""
    check_name(name)
    return Path(storage_dir).resolve() / "studies" / name


def claim_folder(folder: Path, name: str) -> Path:
    """Make ``folder``, which must not exist or be empty: the images of a study of that name
    (in this database or another one sharing the instance folder) are never written over."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        if folder.is_dir() and not any(folder.iterdir()):
            return folder  # left empty (a failed create removes what it wrote, not the folder)
        raise StudyExistsError(
            f"{folder} already holds the images of a study named {name!r} (in this database or "
            "another one using this instance folder); choose another --name"
        ) from None
    return folder


def create_study(
    database_url: str, settings: StudySettings, storage_dir: str | Path = "instance"
) -> StudySummary:
    """Build a study (sources, images, items, slots) in one transaction; see the module docstring."""
    if settings.kind not in ("rating", "pairwise"):
        raise StudyError(f"unknown study kind {settings.kind!r}; use rating or pairwise")
    for name, value in (
        ("per-class", settings.per_class),
        ("answers per item", settings.answers_per_item),
        ("tasks per rater", settings.tasks_per_rater),
        ("lease seconds", settings.lease_seconds),
    ):
        if value < 1:
            raise StudyError(f"{name} must be at least 1, got {value}")
    check_name(settings.name)
    check_completion(settings.completion_code, settings.completion_url)
    catch_items.check_settings(
        settings.catch_fraction, settings.practice, settings.exposure_ms, settings.tasks_per_rater
    )
    labels = [s.label for s in settings.sources]
    if len(set(labels)) != len(labels):
        raise StudyError(f"source labels must differ, got {labels}")
    for label, count in settings.counts:
        if label not in labels or count < 1:
            raise StudyError(
                f"--count {label}={count}: name a source and a positive number of images per class"
            )
    if settings.kind == "pairwise":
        for x, y in source_pairs(labels, settings.pairs):  # feasibility check first
            pair_design(
                settings.count_of(labels[x]),
                settings.count_of(labels[y]),
                (labels[x], labels[y]),
                settings.uses,
                settings.pairs_per_class,
                0,
            )
    elif not settings.sources:
        raise StudyError("a rating study needs at least one --model LABEL=SAMPLE_SET")

    # A SQLite file this create makes is removed again when the study cannot be made (too few
    # images, a file that is no image, ...), and so are the folders it made for it and for the
    # study's images (when left empty): a failed create leaves nothing behind.
    new_file = sqlite_path(normalise_url(database_url))
    if new_file is not None and new_file.exists():
        new_file = None
    made_for = [Path(storage_dir).resolve() / "studies"] + (
        [new_file.resolve()] if new_file else []
    )
    new_folders = sorted(
        {folder for path in made_for for folder in (path, *path.parents) if not folder.exists()},
        key=lambda folder: len(folder.parts),
        reverse=True,  # the deepest first: a folder is empty only once those in it are gone
    )
    try:
        upgrade(database_url)
        engine = make_engine(database_url)
        try:
            with session_scope(engine) as session:
                if session.scalar(select(Study.id).where(Study.name == settings.name)) is not None:
                    raise StudyExistsError(
                        f"a study named {settings.name!r} already exists; choose another --name"
                    )
            return _build(engine, settings, Path(storage_dir))
        finally:
            engine.dispose()
    except BaseException:
        if new_file is not None:
            for path in (new_file, *(Path(f"{new_file}{end}") for end in ("-wal", "-shm"))):
                path.unlink(missing_ok=True)
        for folder in new_folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _build(engine, settings: StudySettings, storage_dir: Path) -> StudySummary:
    """Draw what the study shows (``draw.py``), then write it (``study_rows.py``) and make its
    check items (``catch_items.py``), all in one transaction."""
    loaded = [load_source(spec) for spec in settings.sources]  # each manifest read once
    check_distinct_sources(loaded)
    generated = [src for src, spec in zip(loaded, settings.sources) if not spec.is_real]
    classes = choose_classes(settings, generated)
    example_sources = examples_source(settings, loaded)
    rng = random.Random(settings.seed)  # draws the images, then the slots' order
    chosen, examples = draw_images(settings, loaded, classes, rng)
    check_files = draw_check_originals(settings, loaded, classes, chosen)
    labels = [s.label for s in loaded]
    compared = source_pairs(labels, settings.pairs) if settings.kind == "pairwise" else []

    with session_scope(engine) as session:
        study = insert_study(session, settings, question_of(settings, loaded, compared))
        image_ids = insert_images(
            session, study, loaded, classes, chosen, examples, check_files, example_sources
        )
        item_ids = insert_items(
            session, study, settings, loaded, classes, chosen, compared, image_ids
        )
        insert_slots(session, study, item_ids, settings.answers_per_item, rng)
        originals = [
            catch_items.Original(
                image_ids[(i, f)], loaded[i].path / f, c, cname, loaded[i].image_size
            )
            for i, f, _h, cname, c in check_files
        ]
        checks_dir = study_folder(storage_dir, settings.name) / "checks"
        if study.catch_items or study.practice_items:
            claim_folder(checks_dir, study.name)  # never another study's check images
        try:
            catch_items.add_check_items(
                session,
                study,
                originals,
                study.catch_items,
                study.practice_items,
                len(item_ids) + 1,
                checks_dir,
            )
        except BaseException:
            shutil.rmtree(checks_dir, ignore_errors=True)  # nothing half-written left
            raise
        return StudySummary(
            study.name,
            study.kind,
            study.public_id,
            len(item_ids),
            len(item_ids) * settings.answers_per_item,
            tuple(classes),
            study.catch_items,
            study.practice_items,
            len({(i, f) for i, f, *_ in check_files}),
            study.exposure_ms,
        )


def check_completion(code: str | None, url: str | None) -> None:
    """A completion code raters can type (1-40 letters, digits, - or _) and an http(s) URL."""
    if code is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", code):
        raise StudyError(f"--completion-code {code!r}: use 1-40 letters, digits, '-' or '_'")
    if url is not None and (origin(url) is None or len(url) > 2000):
        raise StudyError(
            f"--completion-url {url!r}: give the absolute http(s) URL the platform gave you"
        )
