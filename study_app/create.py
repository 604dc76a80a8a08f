"""Creating studies from sample sets (paper Appendix G).

A study is built from *sources*: sample sets imported by reference (``manifest.json`` + files,
each file checked against its sha256 and decoded once; see ``sample_sets.py``). Real images
reach a study as a sample set too: the CLI writes them (``hvqeval study create ... --real``,
same preprocessing as training) and passes the folder with the data set's name.

Per class, ``per_class`` images of every source are drawn (seeded; ``counts`` gives a source
another number). Rating studies make one item per image; pairwise studies compare M >= 2
sources, all pairs or those listed, with the designs of ``source_pairs.py`` / ``pairing.py``.
Every item gets k slots (k = answers per item).
"""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from study_app import catch_items
from study_app.assign import utcnow
from study_app.db import make_engine, normalise_url, session_scope, sqlite_path, upgrade
from study_app.errors import StudyError, StudyExistsError, StudySourceError
from study_app.handout import new_token
from study_app.platforms import origin
from study_app.sample_sets import SampleSetFiles, check_images, read_sample_set
from study_app.schema import Image, Item, Slot, Source, Study
from study_app.source_pairs import design_seed, pair_design, source_pairs

REAL_PREFIX = "real:"
QUESTION_RATING = "How realistic does this image look?"
QUESTION_PAIRWISE = "Which image looks the most realistic?"
QUESTION_PAIRWISE_REAL = "Which image is real?"
EXAMPLES_PER_SOURCE = 2


@dataclass(frozen=True)
class SourceSpec:
    """``LABEL=PATH`` for a sample set, ``LABEL=real:DATASET`` for real images still to be
    written (by the CLI, which then passes the written set's path and ``dataset``)."""

    label: str
    location: str
    dataset: str | None = None  # set: the sample set at ``location`` holds real images of it

    @property
    def is_real(self) -> bool:
        return self.dataset is not None or self.location.startswith(REAL_PREFIX)

    @property
    def real_dataset(self) -> str | None:
        """The data set of real images still to be written (``real:DATASET``), else None."""
        return self.location[len(REAL_PREFIX) :] if self.location.startswith(REAL_PREFIX) else None

    @classmethod
    def parse(cls, text: str, force_real: bool = False) -> SourceSpec:
        label, sep, location = text.partition("=")
        if not sep or not label.strip() or not location.strip():
            raise StudyError(f"expected LABEL=SAMPLE_SET (or LABEL=real:DATASET), got {text!r}")
        location = location.strip()
        if force_real and not location.startswith(REAL_PREFIX):
            location = REAL_PREFIX + location
        return cls(label.strip(), location)


@dataclass(frozen=True)
class StudySettings:
    name: str
    kind: str
    sources: tuple[SourceSpec, ...]  # rating: any number; pairwise: two or more
    classes: int | tuple[int, ...]
    per_class: int
    answers_per_item: int = 3
    tasks_per_rater: int = 50
    lease_seconds: int = 600
    seed: int = 0
    pairs_per_class: int | None = None
    real_split: str = "val"
    examples_real: str | None = None  # dataset for example real images when no source is real
    examples_real_set: str | None = None  # the sample set the CLI wrote for those examples
    pairs: tuple[tuple[str, str], ...] = ()  # pairwise: source pairs (labels) compared; () = all
    uses: int | None = (
        None  # pairwise: uses of each sample per source pair (None: 10, or pairs_per_class)
    )
    counts: tuple[tuple[str, int], ...] = ()  # images per class of a source, other than per_class
    completion_code: str | None = (
        None  # one code for every rater (Prolific); None: random per rater
    )
    completion_url: str | None = None  # where finished raters are redirected (Prolific)
    no_examples: bool = False  # said explicitly: instructions without example images
    catch_fraction: float = 0.0  # attention checks: share of catch items in each rater's answers
    practice: int = 0  # practice items shown first (catch_items.py)
    exposure_ms: int | None = None  # HYPE-style exposure: images hidden after this many ms

    def count_of(self, label: str) -> int:
        return dict(self.counts).get(label, self.per_class)


@dataclass(frozen=True)
class StudySummary:
    name: str
    kind: str
    public_id: str
    items: int
    answers_needed: int
    classes: tuple[int, ...]
    catch_items: int = 0  # per rater
    practice_items: int = 0
    check_images: int = 0  # distinct images (none in a counted task) the check items are made from
    exposure_ms: int | None = None


def _load(spec: SourceSpec) -> SampleSetFiles:
    if spec.real_dataset is not None:
        raise StudySourceError(
            f"source {spec.label}: real images of {spec.real_dataset} must be written as a "
            "sample set first (hvqeval study create does this)"
        )
    loaded = read_sample_set(spec.label, spec.location)
    if spec.dataset is not None:  # real images the CLI wrote for this study
        loaded.dataset = spec.dataset
    return loaded


def generated_sources(settings: StudySettings) -> list[SampleSetFiles]:
    return [_load(s) for s in settings.sources if not s.is_real]


def choose_classes(settings: StudySettings) -> list[int]:
    """The classes of the study: those asked for, or ``classes`` of them drawn with the seed
    among those every generated sample set has ``per_class`` images of."""
    generated = generated_sources(settings)
    if not generated:
        raise StudyError("a study needs at least one generated sample set besides real images")
    return _choose_classes(settings.classes, generated, settings, settings.seed)


def _choose_classes(
    requested, generated: list[SampleSetFiles], settings: StudySettings, seed: int
) -> list[int]:
    need = settings.per_class
    eligible = None
    for src in generated:
        ok = {c for c, files in src.by_class.items() if len(files) >= settings.count_of(src.label)}
        eligible = ok if eligible is None else eligible & ok
    eligible = sorted(eligible or ())
    if isinstance(requested, int):
        if requested < 1:
            raise StudyError(f"--classes must be at least 1, got {requested}")
        if len(eligible) < requested:
            raise StudySourceError(
                f"only {len(eligible)} class(es) have {need} images in every sample set; "
                f"ask for fewer classes or fewer images per class"
            )
        return sorted(random.Random(seed).sample(eligible, requested))
    for c in requested:
        if c not in eligible:
            counts = {
                s.label: f"{len(s.by_class.get(c, []))}/{settings.count_of(s.label)}"
                for s in generated
            }
            raise StudySourceError(
                f"class {c} does not have {need} images in every sample set ({counts})"
            )
    return sorted(set(requested))


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
    # images, a file that is no image, ...): a failed create leaves nothing behind.
    new_file = sqlite_path(normalise_url(database_url))
    if new_file is not None and new_file.exists():
        new_file = None
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
        raise


def _build(engine, settings: StudySettings, storage_dir: Path) -> StudySummary:
    extra = EXAMPLES_PER_SOURCE
    generated = generated_sources(settings)
    if not generated:
        raise StudyError("a study needs at least one generated sample set besides real images")
    classes = _choose_classes(settings.classes, generated, settings, settings.seed)
    loaded: list[SampleSetFiles] = [_load(spec) for spec in settings.sources]
    example_sources = []
    if settings.examples_real_set and not any(s.dataset for s in loaded):
        examples_set = read_sample_set("examples-real", settings.examples_real_set)
        examples_set.dataset = settings.examples_real
        example_sources.append(examples_set)
    for src in loaded:
        need = settings.count_of(src.label)
        short = [c for c in classes if len(src.by_class.get(c, [])) < need]
        if short:
            raise StudySourceError(
                f"source {src.label}: too few images of class(es) {short} (need {need} each)"
            )

    rng = random.Random(settings.seed)
    chosen: dict[tuple[int, int], list[tuple[str, str, str]]] = {}  # (source index, class) -> files
    examples: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for s_index, src in enumerate(loaded):
        for c in classes:
            files = sorted(src.by_class.get(c, []))
            picked = rng.sample(files, settings.count_of(src.label))
            chosen[(s_index, c)] = picked
            unused = [f for f in files if f not in set(picked)]
            if len(examples[s_index]) < extra and unused:
                examples[s_index].append(unused[0])
            check_images(src, [f for f, _h, _n in picked + examples[s_index]])
    for src in example_sources:
        check_images(src, [f for files in src.by_class.values() for f, _h, _n in files])
    if not settings.no_examples:
        # The instructions show examples of every source; one that has no image beyond those the
        # study asks about would leave them out silently.
        bare = [src.label for i, src in enumerate(loaded) if not examples[i]]
        if bare:
            raise StudySourceError(
                f"source(s) {', '.join(bare)} have no image left for the instructions' examples (every image "
                f"of the study's classes is a task); add images, lower --per-class / --count, or pass "
                f"--no-examples"
            )

    # Attention checks: from images no counted task shows (real ones when the study has some)
    real = [i for i, src in enumerate(loaded) if src.dataset] or list(range(len(loaded)))
    check_files = catch_items.pick_originals(
        [
            (i, f, h, cname, c)
            for i in real
            for c in classes
            for f, h, cname in sorted(src_files(loaded[i], c))
            if (f, h, cname) not in set(chosen[(i, c)])
        ],
        catch_items.catch_count(settings.catch_fraction, settings.tasks_per_rater)
        + settings.practice,
        settings.seed,
        [loaded[i].label for i in real],
    )
    for i in real:
        check_images(loaded[i], sorted({f for s_i, f, *_ in check_files if s_i == i}))

    compared = (
        source_pairs([s.label for s in loaded], settings.pairs)
        if settings.kind == "pairwise"
        else []
    )
    # "Which image is real?" only when every pair holds real images against generated ones
    real_in_every_pair = bool(compared) and all(
        bool(loaded[x].dataset) != bool(loaded[y].dataset) for x, y in compared
    )
    question = (
        QUESTION_RATING
        if settings.kind == "rating"
        else (QUESTION_PAIRWISE_REAL if real_in_every_pair else QUESTION_PAIRWISE)
    )
    with session_scope(engine) as session:
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
        except IntegrityError:
            raise StudyExistsError(
                f"a study named {settings.name!r} already exists; choose another --name"
            ) from None
        image_ids: dict[tuple[int, str], int] = {}

        def add_source(src: SampleSetFiles, files_examples, files_items) -> int:
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
                    "is_example": is_ex,
                }
                for (f, h, cname, cid, is_ex) in files_examples + files_items
            ]
            ids = session.scalars(
                insert(Image).returning(Image.id, sort_by_parameter_order=True), rows
            ).all()
            return row.id, [(r["file"], i) for r, i in zip(rows, ids)]

        for s_index, src in enumerate(loaded):
            ex = [(f, h, n, _class_of(src, f), True) for f, h, n in examples[s_index]]
            items = [(f, h, n, c, False) for c in classes for f, h, n in chosen[(s_index, c)]]
            stored = {f for f, *_ in ex + items}
            for file, h, n, c in {(f, h, n, c) for i, f, h, n, c in check_files if i == s_index}:
                if file not in stored:  # an image only a check item shows
                    items.append((file, h, n, c, False))
            _, pairs = add_source(src, ex, items)
            for file, image_id in pairs:
                image_ids.setdefault((s_index, file), image_id)
        for src in example_sources:
            add_source(
                src,
                [
                    (f, h, n, _class_of(src, f), True)
                    for fs in src.by_class.values()
                    for f, h, n in fs
                ],
                [],
            )

        item_rows = []
        for c in classes:
            if settings.kind == "rating":
                for s_index in range(len(loaded)):
                    for f, _h, cname in chosen[(s_index, c)]:
                        item_rows.append((c, cname, image_ids[(s_index, f)], None))
            else:
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
                        item_rows.append(
                            (
                                c,
                                files_a[ia][2],
                                image_ids[(x, files_a[ia][0])],
                                image_ids[(y, files_b[ib][0])],
                            )
                        )
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
        item_ids = session.scalars(
            insert(Item).returning(Item.id, sort_by_parameter_order=True), rows
        ).all()
        k = settings.answers_per_item
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
        summary = StudySummary(
            study.name,
            study.kind,
            study.public_id,
            len(item_ids),
            len(item_ids) * k,
            tuple(classes),
            study.catch_items,
            study.practice_items,
            len({(i, f) for i, f, *_ in check_files}),
            study.exposure_ms,
        )
    return summary


def check_completion(code: str | None, url: str | None) -> None:
    """A completion code raters can type (1-40 letters, digits, - or _) and an http(s) URL."""
    if code is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", code):
        raise StudyError(f"--completion-code {code!r}: use 1-40 letters, digits, '-' or '_'")
    if url is not None and (origin(url) is None or len(url) > 2000):
        raise StudyError(
            f"--completion-url {url!r}: give the absolute http(s) URL the platform gave you"
        )


def src_files(src: SampleSetFiles, class_id: int) -> list[tuple[str, str, str]]:
    """(file, sha256, class name) of every image of ``class_id`` in the sample set."""
    return list(src.by_class.get(class_id, []))


def _class_of(src: SampleSetFiles, file: str) -> int:
    for c, files in src.by_class.items():
        if any(f == file for f, _h, _n in files):
            return c
    raise KeyError(file)
