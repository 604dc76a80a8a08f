"""Reading sample sets from disk for a study: ``manifest.json`` and the PNG files it lists.

The on-disk contract is the README's ("On-disk contracts", sample set): a folder of lossless
PNGs and ``manifest.json`` with ``format_version`` (1), ``model``, ``image_size`` and ``files``:
``[{file, class_id, class_name, sha256}, ...]``; a set of real images says ``"real": true``
and names its ``dataset``. The study app reads it itself (it never imports the evaluation package): every
file is checked against its sha256, and the images a study uses are decoded once at create
time, so raters never meet a file that is not an image.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from study_app.errors import StudySourceError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class SampleSetFiles:
    label: str
    path: Path
    sample_set_id: str
    manifest_sha256: str
    image_size: int
    dataset: str | None  # real images: the data set they come from
    by_class: dict[int, list[tuple[str, str, str]]]  # class_id -> [(file, sha256, class_name)]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sample_set(label: str, path: str | Path) -> SampleSetFiles:
    """The files of the sample set at ``path`` by class, each checked against its sha256."""
    root = Path(path)
    manifest_path = root / MANIFEST_NAME
    where = f"source {label}: {root}"
    if not root.is_dir():
        raise StudySourceError(f"{where} does not exist; give the folder of a sample set")
    if not manifest_path.is_file():
        raise StudySourceError(
            f"{where} is not a sample set ({MANIFEST_NAME} is missing); make one from a folder "
            f"of images with `hvqeval samples import {root} --model {label} --out SET_FOLDER`"
        )
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
        if manifest["format_version"] != FORMAT_VERSION:
            raise StudySourceError(
                f"{where}: format_version {manifest['format_version']!r} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        image_size, files = int(manifest["image_size"]), manifest["files"]
        entries = [
            (
                str(f["file"]),
                int(f["class_id"]),
                str(f.get("class_name") or f["class_id"]),
                str(f.get("sha256", "")),
            )
            for f in files
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise StudySourceError(
            f"{where}: {MANIFEST_NAME} is not a sample-set manifest ({err})"
        ) from None
    by_class: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for file, class_id, class_name, expected in entries:
        image = (root / file).resolve()
        if root.resolve() not in image.parents or not image.is_file():
            raise StudySourceError(
                f"{where}: manifest lists {file}, which is missing or outside the set"
            )
        digest = sha256_file(image)
        if expected and digest != expected:
            raise StudySourceError(
                f"{where}: {file} does not match the sha256 in the manifest "
                "(the file changed after sampling)"
            )
        by_class[class_id].append((file, digest, class_name))
    # A set of real images says so (``"real": true``, written by ``hvqeval samples from-dataset``);
    # a generated set may name its training data set too, which does not make it real.
    real_of = (
        str(manifest["dataset"])
        if manifest.get("real") is True and manifest.get("dataset")
        else None
    )
    return SampleSetFiles(
        label,
        root.resolve(),
        root.name,
        hashlib.sha256(raw).hexdigest(),
        image_size,
        real_of,
        dict(by_class),
    )


def check_images(source: SampleSetFiles, files) -> None:
    """Decode each of ``files`` (names in ``source``): StudySourceError naming the first one that
    is not a readable image of the set's size."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(source.path / file) as img:
                img.load()
                size = img.size
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise StudySourceError(
                f"source {source.label}: {source.path / file} is not a readable image "
                f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            ) from None
        if size != (source.image_size, source.image_size):
            raise StudySourceError(
                f"source {source.label}: {source.path / file} is {size[0]}x{size[1]}, the "
                f"manifest says image_size {source.image_size}"
            )
