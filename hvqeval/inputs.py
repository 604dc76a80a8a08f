"""SET / REF arguments of the evaluation commands -> streams of uint8 images (paper Section 6).

``open_images(spec)`` accepts

* a **sample set** (a folder with ``manifest.json``, see ``hvqeval.sample_set``),
* a **folder of images** (PNG / JPEG / BMP / WebP), flat or one class sub-folder per class
  (class ids are the sorted sub-folder names' positions),
* an **npz / npy array** of uint8 images ``(N, H, W, 3)`` (keys ``arr_0``, ``images`` or ``x``;
  labels from ``labels`` / ``y`` / ``arr_1`` when present). A Downsampled-ImageNet npz
  (keys ``data`` / ``labels``) goes to ``models.data.open_dataset``,
* a **dataset** understood by ``models.data.open_dataset``: a built-in name (``shapes``,
  ``fashion_mnist``) or an ImageNet-style root, with an optional split after a colon
  (``shapes:val``, ``/data/imagenet:val``).

Every source is a ``torch.utils.data.Dataset`` whose items are ``torch.uint8`` tensors
``(3, H, W)`` -- exactly what torch-fidelity's feature extractors take -- decoded one at a
time, so 50,000+ images stream through a DataLoader without being held in memory.

Image policy (documented in the README): RGB images are used as they are; grayscale
(``L``) and palette (``P``) images are converted to RGB by replicating / looking up the
channel, and the number converted is reported; images with an alpha channel or other modes
(CMYK, 16-bit) are refused. Mixed image sizes are refused unless ``image_size`` is given, in
which case every image is rescaled (shortest side) and centre-cropped with the evaluation
preprocessing of the paper (``models.data.eval_transform``).

Each source has a ``content_key``: a SHA-256 of what determines its pixels (file names,
sizes and mtimes; the manifest hash; a dataset's name, split, length and files), used to key
cached reference statistics.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hvqeval.errors import HvqevalError, SampleSetError
from hvqeval.sample_set import MANIFEST_NAME, SampleSet

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CONVERTIBLE_MODES = ("RGB", "L", "P")
NPZ_IMAGE_KEYS = ("arr_0", "images", "x")
NPZ_LABEL_KEYS = ("labels", "y", "arr_1")


class InputError(HvqevalError):
    """A SET / REF argument cannot be read as images (named file and what to do)."""


def _sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _file_stat(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def eval_preprocessing(image_size: int | None) -> str:
    """The name recorded in results for the preprocessing applied before feature extraction."""
    return "none" if image_size is None else f"eval_transform({image_size})"


class ImageSource(Dataset):
    """Base class: ``len``, ``__getitem__ -> uint8 (3, H, W)``, labels and a content key."""

    kind = "images"

    def __init__(self, spec: str, *, image_size: int | None):
        self.spec = spec
        self.target_size = image_size
        self._transform = None
        if image_size is not None:
            from models import eval_transform

            self._transform = eval_transform(int(image_size))
        self.converted_to_rgb = 0

    # -- to implement ------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        """Decode image ``index`` as uint8 (3, H, W) before the evaluation preprocessing."""
        raise NotImplementedError

    def fingerprint(self) -> Any:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    class_ids: np.ndarray | None = None  # (N,) int64 or None when unlabelled
    class_names: list[str] | None = None
    native_size: int | None = None

    size_problem: str = ""

    def require_uniform(self) -> int:
        """The common square image size; raises (saying what to do) when there is none."""
        if self.image_size is None:
            raise InputError(self.size_problem or f"{self.spec} has images of different sizes; pass --image-size N")
        return self.image_size

    @property
    def id(self) -> str:
        return self.spec

    @property
    def image_size(self) -> int | None:
        return self.target_size if self.target_size is not None else self.native_size

    @property
    def preprocessing(self) -> str:
        return eval_preprocessing(self.target_size)

    @property
    def content_key(self) -> str:
        return _sha256_json({"kind": self.kind, "content": self.fingerprint()})

    def describe(self, index: int) -> str:
        """What to print for item ``index`` (a path or ``name[index]``) in CSVs and errors."""
        return f"{self.spec}[{index}]"

    def class_name(self, class_id: int) -> str:
        if self.class_names and 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return str(class_id)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.load(index)  # (3, H, W) uint8
        if self._transform is not None:
            image = self._transform(image)
        return image


def _read_image_file(path: Path, source: ImageSource) -> torch.Tensor:
    """Decode one file strictly: corrupt or unsupported images raise an error naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in CONVERTIBLE_MODES:
                raise InputError(
                    f"{path} has image mode {mode} (alpha channel, CMYK or 16-bit); "
                    "only RGB, grayscale and palette images are accepted: convert it to RGB first"
                )
            if mode != "RGB":
                source.converted_to_rgb += 1
                img = img.convert("RGB")
            array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path} is not a readable image ({err}); remove or replace the file") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class SampleSetSource(ImageSource):
    """A sample set; class ids and names from its manifest."""

    kind = "sample-set"

    def __init__(self, spec: str, *, image_size: int | None = None):
        super().__init__(spec, image_size=image_size)
        self.sample_set = SampleSet.load(spec)
        self.files = [self.sample_set.path / f.file for f in self.sample_set.files]
        if not self.files:
            raise InputError(f"sample set {spec} has no images; sample into it first")
        self.class_ids = np.array([f.class_id for f in self.sample_set.files], dtype=np.int64)
        names: dict[int, str] = {}
        for f in self.sample_set.files:
            names.setdefault(f.class_id, f.class_name or str(f.class_id))
        self.class_names = [names.get(i, str(i)) for i in range(int(self.class_ids.max()) + 1)]
        self.native_size = self.sample_set.image_size
        self._check_files_match_manifest()

    def _check_files_match_manifest(self) -> None:
        listed = {f.file for f in self.sample_set.files}
        stray = sorted(
            p.name for p in self.sample_set.path.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.name not in listed
        )
        if stray:
            raise SampleSetError(
                f"sample set {self.sample_set.path}: {stray[0]}"
                + (f" and {len(stray) - 1} more image(s)" if len(stray) > 1 else "")
                + f" not listed in {MANIFEST_NAME}; the manifest does not match its files "
                "(rerun the sampling command or move the extra files away)"
            )

    @property
    def id(self) -> str:
        return str(self.sample_set.path)

    @property
    def model(self) -> str:
        return self.sample_set.model

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        image = _read_image_file(self.files[index], self)
        size = self.native_size
        if tuple(image.shape[1:]) != (size, size):
            raise SampleSetError(
                f"sample set {self.sample_set.path}: {self.files[index].name} is "
                f"{image.shape[2]}x{image.shape[1]} but the manifest says image_size {size}; "
                "the manifest does not match its files"
            )
        return image

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def fingerprint(self) -> Any:
        return {
            "manifest_sha256": self.sample_set.manifest_sha256,
            "files": [[p.name, *_file_stat(p)] for p in self.files],
        }


class FolderSource(ImageSource):
    """A flat folder of images, or a class-folder dataset (one sub-folder per class)."""

    kind = "folder"

    def __init__(self, spec: str, *, image_size: int | None = None):
        super().__init__(spec, image_size=image_size)
        root = Path(spec)
        self.root = root
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        subdirs = [p for p in entries if p.is_dir()]
        files = [p for p in entries if p.is_file()]
        if subdirs and files:
            raise InputError(
                f"{root} mixes image files ({files[0].name}) and sub-folders ({subdirs[0].name}); "
                "use either a flat folder of images or one sub-folder per class"
            )
        if subdirs:
            self.class_names = [d.name for d in subdirs]
            listed = [(p, cid) for cid, d in enumerate(subdirs) for p in sorted(d.iterdir())
                      if p.is_file() and not p.name.startswith(".")]
        else:
            listed = [(p, 0) for p in files]
        non_images = [p for p, _ in listed if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if non_images:
            raise InputError(
                f"{non_images[0]} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)}); "
                "remove it or point at a folder that holds only images"
            )
        if not listed:
            raise InputError(f"{root} holds no images (expected {', '.join(IMAGE_EXTENSIONS)} files)")
        self.files = [p for p, _ in listed]
        self.class_ids = np.array([c for _, c in listed], dtype=np.int64) if subdirs else None
        if image_size is None:
            self.native_size, self.size_problem = self._common_size()

    def _common_size(self) -> tuple[int | None, str]:
        """Read every header (cheap); corrupt headers fail here. Returns (size or None, why not)."""
        first: tuple[Path, tuple[int, int]] | None = None
        for path in self.files:
            try:
                with Image.open(path) as img:
                    size = img.size
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise InputError(f"{path} is not a readable image ({err}); remove or replace the file") from None
            if first is None:
                first = (path, size)
            elif size != first[1]:
                return None, (
                    f"{self.root} has images of different sizes ({first[0].name} is {first[1][0]}x{first[1][1]}, "
                    f"{path.name} is {size[0]}x{size[1]}); pass --image-size N to rescale and centre-crop all"
                )
        assert first is not None
        width, height = first[1]
        if width != height:
            return None, (f"{self.root} has non-square {width}x{height} images; "
                          "pass --image-size N to rescale and centre-crop")
        return width, ""

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        image = _read_image_file(self.files[index], self)
        if self.target_size is None and self.native_size is None:
            raise InputError(self.size_problem)
        if self.target_size is None and tuple(image.shape[1:]) != (self.native_size, self.native_size):
            raise InputError(f"{self.files[index]} changed size while reading; rerun on a stable folder")
        return image

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def fingerprint(self) -> Any:
        return {"files": [[str(p.relative_to(self.root)), *_file_stat(p)] for p in self.files]}


class ArraySource(ImageSource):
    """uint8 images from an ``.npy`` (memory-mapped) or ``.npz`` file."""

    kind = "array"

    def __init__(self, spec: str, *, image_size: int | None = None):
        super().__init__(spec, image_size=image_size)
        path = Path(spec)
        self.path = path
        try:
            if path.suffix == ".npy":
                images, labels = np.load(path, mmap_mode="r"), None
            else:
                with np.load(path) as archive:
                    key = next((k for k in NPZ_IMAGE_KEYS if k in archive.files), None)
                    if key is None:
                        raise InputError(
                            f"{path} has arrays {archive.files}; expected uint8 images under one of "
                            f"{', '.join(NPZ_IMAGE_KEYS)}"
                        )
                    images = archive[key]
                    label_key = next((k for k in NPZ_LABEL_KEYS if k in archive.files), None)
                    labels = archive[label_key] if label_key else None
        except InputError:
            raise
        except (OSError, ValueError) as err:
            raise InputError(f"{path} is not a readable numpy file ({err})") from None
        if images.dtype != np.uint8:
            raise InputError(f"{path}: images must be uint8 (0..255), found {images.dtype}")
        if images.ndim == 3:  # (N, H, W) grayscale -> replicated to RGB on access
            self.converted_to_rgb = len(images)
        elif not (images.ndim == 4 and images.shape[-1] == 3):
            raise InputError(f"{path}: expected images of shape (N, H, W, 3) or (N, H, W), found {images.shape}")
        if len(images) == 0:
            raise InputError(f"{path} holds no images")
        self.images = images
        self.native_size = int(images.shape[1]) if images.shape[1] == images.shape[2] else None
        if self.native_size is None:
            self.size_problem = f"{path}: non-square {images.shape[2]}x{images.shape[1]} images; pass --image-size N"
        if labels is not None:
            labels = np.asarray(labels).astype(np.int64).reshape(-1)
            if len(labels) != len(images):
                raise InputError(f"{path}: {len(labels)} labels for {len(images)} images")
            self.class_ids = labels

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> torch.Tensor:
        image = np.asarray(self.images[index])
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)

    def fingerprint(self) -> Any:
        return {"file": self.path.name, "stat": _file_stat(self.path), "shape": list(self.images.shape)}


class DatasetSource(ImageSource):
    """A dataset opened by ``models.data.open_dataset`` (built-in name or dataset root)."""

    kind = "dataset"

    def __init__(self, spec: str, name: str, split: str, *, image_size: int | None = None,
                 seed: int = 0, length: int | None = None):
        super().__init__(spec, image_size=None)
        from models import DataError, eval_transform, open_dataset

        self.name, self.split = name, split
        kwargs: dict[str, Any] = {}
        if name == "shapes":  # procedural: render at the requested size instead of resampling
            kwargs = {"image_size": image_size, "seed": seed, "length": length}
        elif image_size is not None:
            kwargs = {"transform": eval_transform(int(image_size))}
            self.target_size = int(image_size)
        try:
            self.dataset = open_dataset(name, split, **kwargs)
        except DataError as err:
            raise InputError(f"cannot open {spec!r} as a dataset: {err}") from None
        except TypeError as err:
            raise InputError(f"cannot open {spec!r} as a dataset: {err}") from None
        if len(self.dataset) == 0:
            raise InputError(f"dataset {spec} is empty")
        self.class_names = list(self.dataset.class_names)
        self.native_size = self.dataset.image_size
        self._ids: np.ndarray | None = None

    @property
    def class_ids(self) -> np.ndarray | None:  # type: ignore[override]
        if self._ids is None:
            for attribute in ("labels", "targets", "class_ids"):
                labels = getattr(self.dataset, attribute, None)
                if callable(labels):  # e.g. IDX datasets read their label file on demand
                    labels = labels()
                if labels is not None and len(labels) == len(self.dataset):
                    self._ids = np.asarray(labels, dtype=np.int64)
                    break
            else:
                if self.dataset.format == "shapes":  # class i % 10, see models.datasets.shapes
                    self._ids = np.arange(len(self.dataset), dtype=np.int64) % len(self.class_names)
                else:  # labels only known by decoding every image: treat as unlabelled
                    return None
        return self._ids

    @property
    def preprocessing(self) -> str:
        if self.name == "shapes":
            return f"shapes-render({self.native_size})"
        return eval_preprocessing(self.target_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]

    def load(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]

    def fingerprint(self) -> Any:
        meta: dict[str, Any] = {"repr": repr(self.dataset), "format": self.dataset.format,
                                "split": self.split, "length": len(self.dataset),
                                "seed": getattr(self.dataset, "seed", None)}
        source = Path(str(getattr(self.dataset, "source", self.name)))
        if source.exists():
            files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
            meta["files"] = [[str(p), *_file_stat(p)] for p in files]
        if self.dataset.format == "shapes":  # the renderer's code defines the pixels
            renderer = Path(inspect.getfile(type(self.dataset)))  # models/datasets/shapes.py
            meta["renderer"] = hashlib.sha256(renderer.read_bytes()).hexdigest()
        return meta


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``name:split`` -> (name, split); a plain path (even with a colon in it) -> (spec, None)."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    head, _, tail = spec.rpartition(":")
    return head, tail


def _parse_dataset_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``shapes:val:2000`` -> ("shapes", "val", 2000): a length limit for built-in datasets."""
    name, split = _split_spec(spec)
    if split is not None and split.isdigit() and ":" in name and not os.path.exists(name):
        head, tail = _split_spec(name)
        return head, tail, int(split)
    return name, split, None


def open_images(spec: str, *, image_size: int | None = None, default_split: str = "train",
                seed: int = 0, length: int | None = None) -> ImageSource:
    """Open a SET / REF argument (see module docstring); errors name the offending file."""
    spec = str(spec)
    name, split, limit = _parse_dataset_spec(spec)
    length = limit if limit is not None else length
    path = Path(name)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            if split:
                raise InputError(f"{spec}: a sample set has no splits; drop ':{split}'")
            return SampleSetSource(name, image_size=image_size)
        if (path / "train").is_dir() or (path / "val").is_dir():
            return DatasetSource(spec, name, split or default_split, image_size=image_size)
        try:
            return FolderSource(name, image_size=image_size)
        except PermissionError as err:
            raise InputError(f"cannot read {path} ({err})") from None
    if path.is_file():
        if path.suffix == ".npz":
            with np.load(path) as archive:
                is_batches = "data" in archive.files
            if is_batches:
                return DatasetSource(spec, name, split or default_split, image_size=image_size)
            return ArraySource(name, image_size=image_size)
        if path.suffix == ".npy":
            return ArraySource(name, image_size=image_size)
        raise InputError(f"{path} is a file but not an .npz/.npy array; pass a folder, sample set or array")
    if "/" in name or name.startswith("."):
        raise InputError(f"{spec} does not exist (expected a sample set, image folder, array or dataset)")
    return DatasetSource(spec, name, split or default_split, image_size=image_size, seed=seed, length=length)


@dataclass(frozen=True)
class SourceSummary:
    """What a results row says about a source."""

    id: str
    content_key: str
    n: int
    preprocessing: str


def summarise(source: ImageSource) -> SourceSummary:
    return SourceSummary(source.id, source.content_key, len(source), source.preprocessing)
