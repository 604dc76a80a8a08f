"""The ImageNet-1k class index: class id -> (WordNet id, human-readable name).

Shipped as package data (``models/resources/imagenet_class_index.json``) in the widely used
layout ``{"0": ["n01440764", "tench"], ...}``: ids 0..999 are the 1000 ILSVRC-2012 synsets in
sorted WordNet-id order, the order of class-folder datasets and of pretrained classifiers.
Names are short everyday names (``yellow garden spider`` rather than ``black and gold garden
spider, Argiope aurantia``), the ones the paper prints in Table 5, so studies and reports can
show labels like ``megalith (649)``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from models.errors import DataError

NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, str], ...]:
    text = (
        resources.files("models").joinpath("resources/imagenet_class_index.json").read_text("utf-8")
    )
    raw = json.loads(text)
    return tuple((raw[str(i)][0], raw[str(i)][1]) for i in range(len(raw)))


@lru_cache(maxsize=1)
def _by_wnid() -> dict[str, int]:
    return {wnid: i for i, (wnid, _) in enumerate(_table())}


def _check(class_id: int) -> int:
    if (
        not isinstance(class_id, int)
        or isinstance(class_id, bool)
        or not 0 <= class_id < NUM_CLASSES
    ):
        raise DataError(
            f"ImageNet class id must be an integer in 0..{NUM_CLASSES - 1}, got {class_id!r}"
        )
    return class_id


def imagenet_class_name(class_id: int) -> str:
    """``649 -> "megalith"``."""
    return _table()[_check(class_id)][1]


def imagenet_wnid(class_id: int) -> str:
    """``649 -> "n03743016"``."""
    return _table()[_check(class_id)][0]


def imagenet_class_id(wnid: str) -> int:
    """``"n03743016" -> 649``; DataError for a WordNet id outside the 1000 classes."""
    try:
        return _by_wnid()[wnid]
    except KeyError:
        raise DataError(
            f"{wnid!r} is not one of the 1000 ImageNet-1k WordNet ids (e.g. n01440764)"
        ) from None


def is_imagenet_wnid(name: str) -> bool:
    return name in _by_wnid()


def imagenet_class_names() -> list[str]:
    """All 1000 names, index = class id."""
    return [name for _, name in _table()]


def class_label(name: str, class_id: int) -> str:
    """The label studies and reports show: ``class_label("megalith", 649) -> "megalith (649)"``."""
    return f"{name} ({class_id})"
