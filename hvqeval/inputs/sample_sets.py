"""A sample set as an image source: pixels from its PNGs, classes from its manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hvqeval.errors import SampleSetError
from hvqeval.inputs.base import (
    IMAGE_EXTENSIONS,
    ImageSource,
    InputError,
    file_stat,
    read_image_file,
)
from hvqeval.sample_set import MANIFEST_NAME, SampleSet


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
            p.name
            for p in self.sample_set.path.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and not p.name.startswith(".")
            and p.name not in listed
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
        image = read_image_file(self.files[index], self)
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
            "files": [[p.name, *file_stat(p)] for p in self.files],
        }
