"""``hvqeval data check``: open a dataset, read every item once, and say what is there.

The report gives the format, split, image count, classes (how many exist, how many have
images, images per class) and the image sizes found. Problems are ``DataError`` messages
that name the offending file: a missing split folder, an unreadable image, a label out of
range, an empty folder, an npz file without ``data``/``labels``. By default the first
problem stops the check; ``all_errors=True`` keeps going and lists every unreadable file.

Folder images are fully decoded (a truncated JPEG only fails when its pixels are read);
``headers_only=True`` reads just the headers, which is much faster for a full ImageNet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from models.datasets.base import ImageDataset
from models.errors import DataError


@dataclass(frozen=True)
class CheckReport:
    format: str
    source: str
    split: str | None
    images: int
    num_classes: int
    class_counts: dict[int, int]  # class id -> images (classes with at least one image)
    image_sizes: dict[str, int]  # "WxH" -> images
    class_names: list[str] = field(repr=False)
    errors: list[str] = field(default_factory=list)
    checked: str = "pixels"  # "pixels" (every image decoded), "headers" or "arrays"

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        data = asdict(self)
        data["class_counts"] = {str(k): v for k, v in sorted(self.class_counts.items())}
        data["ok"] = self.ok
        data.pop("class_names")
        data["classes_present"] = len(self.class_counts)
        return data

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        counts = sorted(self.class_counts.items())
        out = [
            f"format:      {self.format}",
            f"source:      {self.source}",
            f"split:       {self.split if self.split is not None else '(none)'}",
            f"images:      {self.images}",
            f"classes:     {len(counts)} with images, of {self.num_classes}",
        ]
        if counts:
            per_class = [n for _, n in counts]
            out.append(f"per class:   {min(per_class)}..{max(per_class)} images")
            shown = ", ".join(f"{self.class_names[c]} ({c})" for c, _ in counts[:5])
            out.append(f"e.g.:        {shown}{' ...' if len(counts) > 5 else ''}")
        sizes = sorted(self.image_sizes.items(), key=lambda kv: -kv[1])
        size_text = ", ".join(f"{s} x{n}" for s, n in sizes[:5]) + (
            " ..." if len(sizes) > 5 else ""
        )
        out.append(
            f"image sizes: {size_text or '(none)'}{'  [headers only]' if self.checked == 'headers' else ''}"
        )
        if self.errors:
            out.append(f"errors:      {len(self.errors)}")
            out += [f"  {e}" for e in self.errors]
        else:
            out.append("status:      ok")
        return out


def _label_counts(ids: Iterable[int] | np.ndarray, num_classes: int, where: str) -> dict[int, int]:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        bad = int(np.flatnonzero((ids < 0) | (ids >= num_classes))[0])
        raise DataError(f"{where} item {bad}: label {ids[bad]} out of range 0..{num_classes - 1}")
    values, counts = np.unique(ids, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def check_dataset(
    dataset: ImageDataset,
    *,
    all_errors: bool = False,
    headers_only: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> CheckReport:
    """Read every item of ``dataset`` once (streaming) and summarise it."""
    from models.datasets.folders import ImageFolder
    from models.datasets.idx import IdxDataset, read_idx
    from models.datasets.npz import NpzBatches
    from models.datasets.shapes import ShapesDataset

    wrap = progress or (lambda it: it)
    errors: list[str] = []
    sizes: Counter[str] = Counter()
    checked = "arrays"
    n = len(dataset)
    if isinstance(dataset, ShapesDataset):
        counts = _label_counts(np.arange(n) % dataset.num_classes, dataset.num_classes, "shapes")
        sizes[f"{dataset.native_size}x{dataset.native_size}"] = n
    elif isinstance(dataset, IdxDataset):
        labels = dataset.labels()
        counts = _label_counts(labels, dataset.num_classes, str(dataset.labels_path))
        read_idx(str(dataset.images_path))  # inflates the whole stream: catches truncation
        sizes[f"{dataset.native_size}x{dataset.native_size}"] = n
    elif isinstance(dataset, NpzBatches):
        counts = _label_counts(dataset.class_ids, dataset.num_classes, dataset.source)
        for i in wrap(range(0, n, max(1, n // 100)) if n else []):  # a sample of rows: readable?
            dataset.load(i)
        sizes[f"{dataset.native_size}x{dataset.native_size}"] = n
    elif isinstance(dataset, ImageFolder):
        from PIL import Image

        from models.datasets.folders import decode_image

        checked = "headers" if headers_only else "pixels"
        good_ids = []
        for path, class_id in wrap(list(zip(dataset.files, dataset.class_ids))):
            try:
                if headers_only:
                    try:
                        with Image.open(path) as image:
                            size = image.size
                    except (OSError, ValueError, SyntaxError) as err:
                        raise DataError(
                            f"{path}: unreadable image ({err.__class__.__name__}: {err})"
                        ) from None
                else:
                    size = decode_image(path).size
            except DataError as err:
                if not all_errors:
                    raise
                errors.append(str(err))
                continue
            sizes[f"{size[0]}x{size[1]}"] += 1
            good_ids.append(class_id)
        counts = _label_counts(good_ids, dataset.num_classes, dataset.source)
    else:
        checked = "pixels"
        ids = []
        for i in wrap(range(n)):
            image, class_id = dataset[i]
            sizes[f"{image.shape[-1]}x{image.shape[-2]}"] += 1
            ids.append(class_id)
        counts = _label_counts(ids, dataset.num_classes, dataset.source)
    return CheckReport(
        format=dataset.format,
        source=dataset.source,
        split=dataset.split,
        images=n,
        num_classes=dataset.num_classes,
        class_counts=counts,
        image_sizes=dict(sizes),
        class_names=dataset.class_names,
        errors=errors,
        checked=checked,
    )
