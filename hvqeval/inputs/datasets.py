"""A dataset opened by ``models.open_dataset`` as a source (built-in name or dataset root)."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvqeval.inputs.base import (
    ImageSource,
    InputError,
    eval_preprocessing,
    file_stat,
)


class DatasetSource(ImageSource):
    """A dataset opened by ``models.data.open_dataset`` (built-in name or dataset root)."""

    kind = "dataset"

    def __init__(
        self,
        spec: str,
        name: str,
        split: str,
        *,
        image_size: int | None = None,
        seed: int = 0,
        length: int | None = None,
    ):
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
        meta: dict[str, Any] = {
            "repr": repr(self.dataset),
            "format": self.dataset.format,
            "split": self.split,
            "length": len(self.dataset),
            "seed": getattr(self.dataset, "seed", None),
        }
        source = Path(str(getattr(self.dataset, "source", self.name)))
        if source.exists():
            files = (
                [source]
                if source.is_file()
                else sorted(p for p in source.rglob("*") if p.is_file())
            )
            meta["files"] = [[str(p), *file_stat(p)] for p in files]
        if self.dataset.format == "shapes":  # the renderer's code defines the pixels
            renderer = Path(inspect.getfile(type(self.dataset)))  # models/datasets/shapes.py
            meta["renderer"] = hashlib.sha256(renderer.read_bytes()).hexdigest()
        return meta
