"""Turning any image set into a sample set: published samples of other models and real images.

Two ways in, one way out (``SampleSetWriter``, so a study or metric only ever reads sample sets):

* ``import_images(SRC, OUT, model=...)``: SRC is a flat folder of images, a folder of class
  sub-folders, or an ``.npz``/``.npy`` array (``arr_0``, labels optional). Files are decoded by the
  evaluation readers (``hvqeval.inputs``: strict decoding, grayscale/palette converted, alpha
  refused). Class sub-folders are named by class id (``649``), ImageNet wnid (``n03743016``)
  or class name of the ``classes_of`` table (``megalith``), or mapped by a CSV
  ``folder,class_id``. Unlabelled images take one ``class_id`` given explicitly.
* ``write_dataset_images(DATASET, SPLIT, OUT, ...)``: ``per_class`` real images per class,
  preprocessed as in training evaluation (``models.eval_transform``); the manifest records
  ``"real": true`` and the ``dataset``, which the study app uses to name real images.

Both write into a hidden folder next to OUT and rename it at the end, so an error (a corrupt
file, an unknown class) leaves nothing half-written behind.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hvqeval.errors import HvqevalError
from hvqeval.sample_set import MANIFEST_NAME, SampleSet, SampleSetWriter
from models import with_default_mode

RESIZE_FILTER = "rescale shortest side to {size} (antialiased bilinear), centre crop {size}x{size}"


class ImageImportError(HvqevalError):
    """An image set cannot be imported as a sample set (names the file and what to do)."""


def class_table(classes_of: str) -> list[str]:
    """Class names (index = class id) of ``imagenet`` or a built-in dataset (``shapes``...)."""
    from models import builtin_class_names, imagenet_class_names

    if classes_of == "imagenet":
        return imagenet_class_names()
    table = builtin_class_names(classes_of)
    if table is None:
        raise ImageImportError(
            f"--classes-of {classes_of!r}: choose imagenet, shapes or fashion_mnist"
        )
    return table


def imagenet_wnids() -> dict[str, int]:
    """{wnid: class id} from the class index the models package ships (its own data file)."""
    from importlib import resources

    text = (
        resources.files("models").joinpath("resources/imagenet_class_index.json").read_text("utf-8")
    )
    return {wnid: int(i) for i, (wnid, _) in json.loads(text).items()}


def read_class_map(path: str | Path) -> dict[str, int]:
    """``folder,class_id`` rows (a header row is allowed) -> {folder: class_id}."""
    mapping: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise ImageImportError(f"--class-map {path}: cannot read it ({err})") from None
    for line, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise ImageImportError(
                f"--class-map {path} line {line}: expected 'folder,class_id', got {row}"
            )
        folder, value = row[0].strip(), row[1].strip()
        if not value.lstrip("-").isdigit():
            if line == 1:
                continue  # header
            raise ImageImportError(
                f"--class-map {path} line {line}: class id {value!r} is not an integer"
            )
        mapping[folder] = int(value)
    if not mapping:
        raise ImageImportError(
            f"--class-map {path} maps no folders (expected rows 'folder,class_id')"
        )
    return mapping


def folder_class_id(
    folder: Path, table: list[str], classes_of: str, class_map: dict[str, int] | None
) -> int:
    """The class id a class sub-folder stands for; an unknown one is an error naming it."""
    name = folder.name
    if class_map is not None:
        if name not in class_map:
            raise ImageImportError(
                f"{folder}: class folder {name!r} is not in the --class-map; add a row "
                f"'{name},CLASS_ID' or remove the folder"
            )
        class_id = class_map[name]
    elif name.isdigit():
        class_id = int(name)
    elif re.fullmatch(r"n\d{8}", name) and classes_of == "imagenet":
        wnids = imagenet_wnids()
        if name not in wnids:
            raise ImageImportError(
                f"{folder}: class folder {name!r} is not one of the 1000 ImageNet wnids; "
                "rename it or pass --class-map CSV"
            )
        class_id = wnids[name]
    else:
        wanted = name.replace("_", " ").casefold()
        matches = [i for i, n in enumerate(table) if n.casefold() == wanted]
        if len(matches) != 1:
            why = (
                "names several classes"
                if matches
                else "is not a class id, ImageNet wnid or class name"
            )
            raise ImageImportError(
                f"{folder}: class folder {name!r} {why} of {classes_of}; rename it to the "
                "class id or pass --class-map CSV"
            )
        class_id = matches[0]
    if not 0 <= class_id < len(table):
        raise ImageImportError(
            f"{folder}: class {class_id} is not a class of {classes_of} "
            f"(0..{len(table) - 1}); fix the folder name or --class-map"
        )
    return class_id


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out``, renamed to ``out`` on success and removed on any error."""
    if out.exists():
        raise ImageImportError(f"--out {out} already exists; choose a new folder or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = with_default_mode(Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent)))
    try:
        yield stage
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def import_images(
    src: str | Path,
    out: str | Path,
    *,
    model: str,
    classes_of: str = "imagenet",
    class_map: str | Path | None = None,
    class_id: int | None = None,
    resize: int | None = None,
    progress: bool = False,
) -> SampleSet:
    """Write the images of ``src`` as the sample set ``out`` (see the module docstring)."""
    from tqdm import tqdm

    from hvqeval.inputs import ArraySource, FolderSource, InputError

    src, out = Path(src), Path(out)
    if resize is not None and resize < 1:
        raise ImageImportError(f"--resize must be a positive size in pixels, got {resize}")
    table = class_table(classes_of)
    mapping = read_class_map(class_map) if class_map is not None else None
    try:
        if src.is_dir():
            if (src / MANIFEST_NAME).is_file():
                raise ImageImportError(
                    f"{src} is already a sample set ({MANIFEST_NAME}); use it as it is"
                )
            source = FolderSource(str(src), image_size=resize)
        elif src.is_file() and src.suffix in (".npz", ".npy"):
            source = ArraySource(str(src), image_size=resize)
        elif src.exists():
            raise ImageImportError(f"{src} is neither a folder of images nor an .npz/.npy array")
        else:
            raise ImageImportError(f"{src} does not exist")
    except InputError as err:
        raise ImageImportError(str(err)) from None
    if source.image_size is None:
        problem = source.size_problem or f"{src} has images of different sizes"
        raise ImageImportError(problem.replace("--image-size N", "--resize SIZE"))
    size = source.image_size

    if isinstance(source, FolderSource) and source.class_names:
        folders = [src / n for n in source.class_names]
        ids = [folder_class_id(f, table, classes_of, mapping) for f in folders]
        labels = np.array([ids[i] for i in source.class_ids], dtype=np.int64)  # (N,)
    elif source.class_ids is not None:
        labels = source.class_ids
        bad = np.flatnonzero((labels < 0) | (labels >= len(table)))
        if len(bad):
            raise ImageImportError(
                f"{src}: image {bad[0]} has label {labels[bad[0]]}, not a class of "
                f"{classes_of} (0..{len(table) - 1})"
            )
    else:
        if class_id is None:
            raise ImageImportError(
                f"{src} has no class labels (flat folder or array without labels); pass "
                "--class-id N for all its images, or use class sub-folders"
            )
        if not 0 <= class_id < len(table):
            raise ImageImportError(
                f"--class-id {class_id} is not a class of {classes_of} (0..{len(table) - 1})"
            )
        labels = np.full(len(source), class_id, dtype=np.int64)

    from models import class_label

    meta = {
        "source": str(src.resolve()),
        "source_kind": source.kind,
        "classes_of": classes_of,
        "resize": None if resize is None else RESIZE_FILTER.format(size=resize),
    }
    with _staged(out) as stage:
        writer = SampleSetWriter(stage, model=model, image_size=size, **meta)
        for index in tqdm(
            range(len(source)), desc=f"import {src.name}", unit="img", disable=not progress
        ):
            try:
                image = source[index]  # (3, size, size) uint8
            except InputError as err:
                raise ImageImportError(str(err)) from None
            cid = int(labels[index])
            writer.add(
                np.ascontiguousarray(image.permute(1, 2, 0).numpy()),
                cid,
                class_label(table[cid], cid),
            )
            writer.files[-1]["source_file"] = source.describe(index)
        writer.flush()
    return SampleSet.load(out)


def write_dataset_images(
    dataset_name: str,
    split: str,
    out: str | Path,
    *,
    per_class: int,
    classes: list[int] | None = None,
    image_size: int | None = None,
    seed: int = 0,
    model: str | None = None,
    progress: bool = False,
) -> SampleSet:
    """``per_class`` real images of each class (all classes by default) as the sample set ``out``.

    Images are drawn in an order shuffled by ``seed`` and preprocessed with ``eval_transform``
    (rescale the shortest side, centre crop) to ``image_size`` (default: the dataset's size).
    """
    from tqdm import tqdm

    from models import ModelsError, class_label, eval_transform, open_dataset

    if per_class < 1:
        raise ImageImportError(f"--per-class must be at least 1, got {per_class}")
    try:
        if dataset_name == "shapes":
            dataset = open_dataset("shapes", split, image_size=image_size)
        else:
            transform = eval_transform(image_size) if image_size else None
            dataset = open_dataset(dataset_name, split, transform=transform)
    except ModelsError as err:
        raise ImageImportError(f"{dataset_name}: {err}") from None
    size = dataset.image_size
    if size is None:
        raise ImageImportError(
            f"{dataset_name}:{split} has images of different sizes; pass --image-size SIZE"
        )
    classes = list(range(dataset.num_classes)) if classes is None else list(classes)
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise ImageImportError(
            f"dataset {dataset_name} has no class(es) {bad} (it has {dataset.num_classes})"
        )
    wanted = {c: per_class for c in classes}
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    targets = getattr(
        dataset, "targets", None
    )  # labels without decoding, where a reader offers them
    if dataset_name == "shapes":
        preprocessing = f"rendered at {size}x{size}"
    else:
        preprocessing = "none" if image_size is None else RESIZE_FILTER.format(size=size)
    meta = {
        "real": True,
        "dataset": dataset_name,
        "split": split,
        "seed": seed,
        "preprocessing": preprocessing,
    }
    with _staged(Path(out)) as stage:
        writer = SampleSetWriter(
            stage, model=model or f"real-{dataset_name}", image_size=size, **meta
        )
        bar = tqdm(
            total=per_class * len(classes),
            desc=f"{dataset_name}:{split}",
            unit="img",
            disable=not progress,
        )
        for index in order:
            if not any(wanted.values()):
                break
            if targets is not None and wanted.get(int(targets[index]), 0) == 0:
                continue
            image, class_id = dataset[index]  # (3, size, size) uint8
            if wanted.get(class_id, 0) == 0:
                continue
            writer.add(
                np.ascontiguousarray(image.permute(1, 2, 0).numpy()),
                class_id,
                class_label(dataset.class_names[class_id], class_id),
            )
            writer.files[-1]["source_index"] = (
                index  # item of DATASET:SPLIT, to trace the image back
            )
            wanted[class_id] -= 1
            bar.update()
        bar.close()
        short = sorted(c for c, n in wanted.items() if n)
        if short:
            raise ImageImportError(
                f"{dataset_name}:{split} has too few images of class(es) {short} "
                f"(need {per_class} each); lower --per-class"
            )
        writer.flush()
    return SampleSet.load(out)
