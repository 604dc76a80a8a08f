"""Creating studies from sample sets and real images (paper Appendix G).

A study is built from *sources*: sample sets imported by reference (manifest + files, each
file checked against its sha256) and optionally real images. Real images come from a
dataset (``models.data.open_dataset``) through the same preprocessing as training
(``eval_transform``: rescale the shortest side, centre crop), and are written once as a
sample set in the instance folder so they are hashed and served like any other image.

Per class, ``per_class`` images of every source are drawn (seeded). Rating studies make one
item per image; pairwise studies make ``pairs_per_class`` pairs per class with the design
of ``pairing.py``. Every item gets k slots (k = answers per item).
"""

from __future__ import annotations

import json
import random
import secrets
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from study_app.assign import new_token, utcnow
from study_app.db import get_engine, refresh_statistics, upgrade, write_session
from study_app.errors import StudyError, StudyExistsError, StudySourceError
from study_app.models import Image, Item, Slot, Source, Study
from study_app.pairing import design_pairs, uses_for_pairs

REAL_PREFIX = "real:"
QUESTION_RATING = "How realistic does this image look?"
QUESTION_PAIRWISE = "Which image looks the most realistic?"
QUESTION_PAIRWISE_REAL = "Which image is real?"
EXAMPLES_PER_SOURCE = 2


@dataclass(frozen=True)
class SourceSpec:
    """``LABEL=PATH`` for a sample set, ``LABEL=real:DATASET`` for real images."""

    label: str
    location: str

    @property
    def is_real(self) -> bool:
        return self.location.startswith(REAL_PREFIX)

    @classmethod
    def parse(cls, text: str, force_real: bool = False) -> "SourceSpec":
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
    sources: tuple[SourceSpec, ...]  # rating: any number; pairwise: (a, b)
    classes: int | tuple[int, ...]
    per_class: int
    answers_per_item: int = 3
    tasks_per_rater: int = 50
    lease_seconds: int = 600
    seed: int = 0
    pairs_per_class: int | None = None
    real_split: str = "val"
    examples_real: str | None = None  # dataset for example real images when no source is real


@dataclass(frozen=True)
class StudySummary:
    name: str
    kind: str
    public_id: str
    items: int
    answers_needed: int
    classes: tuple[int, ...]


@dataclass
class _Loaded:
    spec: SourceSpec
    path: Path
    sample_set_id: str
    manifest_sha256: str
    image_size: int
    by_class: dict[int, list[tuple[str, str, str]]]  # class_id -> [(file, sha256, class_name)]


def _load_sample_set(spec: SourceSpec) -> _Loaded:
    from hvqeval.errors import SampleSetError
    from hvqeval.sample_set import SampleSet, sha256_file

    try:
        sample_set = SampleSet.load(spec.location)
        sample_set.verify()
    except SampleSetError as err:
        raise StudySourceError(f"source {spec.label}: {err}") from None
    by_class: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for entry in sample_set.files:
        digest = entry.sha256 or sha256_file(sample_set.path / entry.file)
        by_class[entry.class_id].append((entry.file, digest, entry.class_name or str(entry.class_id)))
    return _Loaded(spec, sample_set.path.resolve(), sample_set.id, sample_set.manifest_sha256,
                   sample_set.image_size, dict(by_class))


def _class_label(names: list[str], class_id: int) -> str:
    import models.data as data

    if hasattr(data, "class_label"):
        return data.class_label(names[class_id], class_id)
    return f"{names[class_id]} ({class_id})"


def _write_real_images(dataset_name: str, split: str, label: str, classes: list[int], count: int,
                       size: int, seed: int, out: Path) -> _Loaded:
    """Draw ``count`` real images per class, preprocess them as in training, write a sample set."""
    import numpy as np

    from hvqeval.sample_set import SampleSetWriter
    from models.data import eval_transform, open_dataset
    from models.errors import ModelsError

    try:
        kwargs = {"image_size": size} if dataset_name == "shapes" else {}
        dataset = open_dataset(dataset_name, split, transform=eval_transform(size), **kwargs)
    except ModelsError as err:
        raise StudySourceError(f"real images {label}: {err}") from None
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise StudySourceError(f"real images {label}: dataset {dataset_name} has no class(es) {bad} "
                               f"(it has {dataset.num_classes} classes)")
    wanted = {c: count for c in classes}
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    targets = getattr(dataset, "targets", None)  # labels without decoding, where a reader offers them
    if out.exists():
        import shutil

        shutil.rmtree(out)
    writer = SampleSetWriter(out, model=label, image_size=size, dataset=dataset_name, split=split, seed=seed,
                             preprocessing="rescale shortest side, centre crop (eval_transform)")
    for index in order:
        if not any(wanted.values()):
            break
        if targets is not None and wanted.get(int(targets[index]), 0) == 0:
            continue
        image, class_id = dataset[index]  # (3, size, size) uint8
        if wanted.get(class_id, 0) == 0:
            continue
        writer.add(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), class_id,
                   _class_label(dataset.class_names, class_id))
        wanted[class_id] -= 1
    short = {c: n for c, n in wanted.items() if n}
    if short:
        raise StudySourceError(f"real images {label}: {dataset_name}:{split} has too few images of class(es) "
                               f"{sorted(short)} (need {count} each)")
    writer.close()
    loaded = _load_sample_set(SourceSpec(label, str(out)))
    loaded.spec = SourceSpec(label, REAL_PREFIX + dataset_name)
    return loaded


def _choose_classes(requested, generated: list[_Loaded], need: int, seed: int) -> list[int]:
    eligible = None
    for src in generated:
        ok = {c for c, files in src.by_class.items() if len(files) >= need}
        eligible = ok if eligible is None else eligible & ok
    eligible = sorted(eligible or ())
    if isinstance(requested, int):
        if requested < 1:
            raise StudyError(f"--classes must be at least 1, got {requested}")
        if len(eligible) < requested:
            raise StudySourceError(f"only {len(eligible)} class(es) have {need} images in every sample set; "
                                   f"ask for fewer classes or fewer images per class")
        return sorted(random.Random(seed).sample(eligible, requested))
    for c in requested:
        if c not in eligible:
            counts = {s.spec.label: len(s.by_class.get(c, [])) for s in generated}
            raise StudySourceError(f"class {c} does not have {need} images in every sample set ({counts})")
    return sorted(set(requested))


def create_study(database_url: str, settings: StudySettings, storage_dir: str | Path = "instance") -> StudySummary:
    """Build a study (sources, images, items, slots) in one transaction; see the module docstring."""
    if settings.kind not in ("rating", "pairwise"):
        raise StudyError(f"unknown study kind {settings.kind!r}; use rating or pairwise")
    for name, value in (("per-class", settings.per_class), ("answers per item", settings.answers_per_item),
                        ("tasks per rater", settings.tasks_per_rater), ("lease seconds", settings.lease_seconds)):
        if value < 1:
            raise StudyError(f"{name} must be at least 1, got {value}")
    if not settings.name or len(settings.name) > 100 or not settings.name.replace("-", "").replace("_", "").isalnum():
        raise StudyError(f"study name {settings.name!r}: use 1-100 letters, digits, '-' or '_'")
    if settings.kind == "pairwise":
        if len(settings.sources) != 2:
            raise StudyError("a pairwise study compares exactly two sources (--a and --b)")
        if settings.pairs_per_class is None:
            raise StudyError("a pairwise study needs --pairs-per-class")
        uses, _ = uses_for_pairs(settings.per_class, settings.per_class, settings.pairs_per_class)
        design_pairs(settings.per_class, settings.per_class, uses, uses, 0)  # feasibility check first
    elif not settings.sources:
        raise StudyError("a rating study needs at least one --model LABEL=SAMPLE_SET")
    labels = [s.label for s in settings.sources]
    if len(set(labels)) != len(labels):
        raise StudyError(f"source labels must differ, got {labels}")

    upgrade(database_url)
    engine = get_engine(database_url)
    with write_session(engine) as session:
        if session.scalar(select(Study.id).where(Study.name == settings.name)) is not None:
            raise StudyExistsError(f"a study named {settings.name!r} already exists; choose another --name")

    extra = EXAMPLES_PER_SOURCE
    generated = [_load_sample_set(s) for s in settings.sources if not s.is_real]
    if not generated:
        raise StudyError("a study needs at least one generated sample set besides real images")
    classes = _choose_classes(settings.classes, generated, settings.per_class, settings.seed)
    size = generated[0].image_size
    study_dir = Path(storage_dir).resolve() / "studies" / settings.name
    loaded: list[_Loaded] = []
    for spec in settings.sources:
        if spec.is_real:
            loaded.append(_write_real_images(spec.location[len(REAL_PREFIX):], settings.real_split, spec.label,
                                             classes, settings.per_class + extra, size, settings.seed,
                                             study_dir / f"real-{spec.label}"))
        else:
            loaded.append(next(g for g in generated if g.spec == spec))
    example_sources = []
    if settings.examples_real and not any(s.spec.is_real for s in loaded):
        example_sources.append(_write_real_images(settings.examples_real, settings.real_split, "examples-real",
                                                  classes[:1], extra, size, settings.seed,
                                                  study_dir / "examples-real"))

    rng = random.Random(settings.seed)
    chosen: dict[tuple[int, int], list[tuple[str, str, str]]] = {}  # (source index, class) -> files
    examples: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for s_index, src in enumerate(loaded):
        for c in classes:
            files = sorted(src.by_class.get(c, []))
            picked = rng.sample(files, settings.per_class)
            chosen[(s_index, c)] = picked
            unused = [f for f in files if f not in set(picked)]
            if len(examples[s_index]) < extra and unused:
                examples[s_index].append(unused[0])

    real_in_study = any(s.spec.is_real for s in loaded)
    question = QUESTION_RATING if settings.kind == "rating" else (
        QUESTION_PAIRWISE_REAL if real_in_study else QUESTION_PAIRWISE)
    with write_session(engine) as session:
        study = Study(name=settings.name, public_id=secrets.token_urlsafe(12), kind=settings.kind, status="open",
                      question=question, answers_per_item=settings.answers_per_item,
                      tasks_per_rater=settings.tasks_per_rater, lease_seconds=settings.lease_seconds,
                      seed=settings.seed, settings_json=json.dumps(asdict(settings)), created_at=utcnow())
        session.add(study)
        try:
            session.flush()
        except IntegrityError:
            raise StudyExistsError(f"a study named {settings.name!r} already exists; choose another --name") from None
        image_ids: dict[tuple[int, str], int] = {}

        def add_source(src: _Loaded, files_examples, files_items) -> int:
            row = Source(study_id=study.id, label=src.spec.label, is_real=src.spec.is_real or src in example_sources,
                         path=str(src.path), sample_set_id=src.sample_set_id, manifest_sha256=src.manifest_sha256)
            session.add(row)
            session.flush()
            rows = [dict(study_id=study.id, source_id=row.id, token=new_token(), file=f, sha256=h, class_id=cid,
                         class_name=cname, is_example=is_ex)
                    for (f, h, cname, cid, is_ex) in files_examples + files_items]
            ids = session.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), rows).all()
            return row.id, [(r["file"], i) for r, i in zip(rows, ids)]

        for s_index, src in enumerate(loaded):
            ex = [(f, h, n, _class_of(src, f), True) for f, h, n in examples[s_index]]
            items = [(f, h, n, c, False) for c in classes for f, h, n in chosen[(s_index, c)]]
            _, pairs = add_source(src, ex, items)
            for file, image_id in pairs:
                image_ids.setdefault((s_index, file), image_id)
        for src in example_sources:
            add_source(src, [(f, h, n, _class_of(src, f), True) for fs in src.by_class.values() for f, h, n in fs], [])

        item_rows = []
        for c in classes:
            if settings.kind == "rating":
                for s_index in range(len(loaded)):
                    for f, _h, cname in chosen[(s_index, c)]:
                        item_rows.append((c, cname, image_ids[(s_index, f)], None))
            else:
                uses, _ = uses_for_pairs(settings.per_class, settings.per_class, settings.pairs_per_class)
                design = design_pairs(settings.per_class, settings.per_class, uses, uses,
                                      seed=settings.seed * 1_000_003 + c)
                files_a, files_b = chosen[(0, c)], chosen[(1, c)]
                for ia, ib in design.pairs:
                    item_rows.append((c, files_a[ia][2], image_ids[(0, files_a[ia][0])],
                                      image_ids[(1, files_b[ib][0])]))
        rows = [dict(study_id=study.id, number=n + 1, class_id=c, class_name=cname, image_a_id=a, image_b_id=b)
                for n, (c, cname, a, b) in enumerate(item_rows)]
        item_ids = session.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), rows).all()
        k = settings.answers_per_item
        slots = [dict(study_id=study.id, item_id=i, slot_no=s, shuffle=rng.randrange(2**31), filled=False)
                 for i in item_ids for s in range(k)]
        session.execute(insert(Slot), slots)
        summary = StudySummary(study.name, study.kind, study.public_id, len(item_ids), len(item_ids) * k,
                               tuple(classes))
    refresh_statistics(engine)
    return summary


def _class_of(src: _Loaded, file: str) -> int:
    for c, files in src.by_class.items():
        if any(f == file for f, _h, _n in files):
            return c
    raise KeyError(file)
