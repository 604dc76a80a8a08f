"""The stages of a hierarchy: ``level1`` .. ``levelN`` (autoencoder levels, 1 = pixels), ``prior``.

A stage names a network that is trained on its own (Algorithm 1), its checkpoint
(``<run>/<stage>.pt``), its softmax temperature when sampling and its term of the likelihood
bound. ``Stage`` is a ``str`` so it is a file stem, dict key and JSON value as it is; reading
the level number out of the name happens here and nowhere else.
"""

from __future__ import annotations

import re

from models.errors import ConfigError

_LEVEL = re.compile(r"level([1-9][0-9]*)")


class Stage(str):
    """``Stage("level2")``, ``Stage.of_level(2)``, ``Stage.PRIOR``; a bad name is a ``ConfigError``."""

    PRIOR: Stage

    def __new__(cls, name: str) -> Stage:
        if name != "prior" and not _LEVEL.fullmatch(str(name)):
            raise ConfigError(f"{name!r} is not a stage; stages are level1, level2, ... and prior")
        return super().__new__(cls, name)

    @classmethod
    def of_level(cls, number: int) -> Stage:
        """The autoencoder level ``number`` (1-based: level 1 models the pixels)."""
        return cls(f"level{int(number)}")

    @classmethod
    def all_of(cls, card) -> list[Stage]:
        """A card's stages in training order: ``level1`` .. ``levelN``, ``prior``."""
        return [cls.of_level(i + 1) for i in range(len(card.level))] + [cls.PRIOR]

    @property
    def is_prior(self) -> bool:
        return self == "prior"

    @property
    def level(self) -> int:
        """The 1-based level number of an autoencoder stage."""
        match = _LEVEL.fullmatch(self)
        if match is None:
            raise ConfigError("the prior is not an autoencoder level")
        return int(match.group(1))

    @property
    def index(self) -> int:
        """The 0-based index into ``card.level`` of an autoencoder stage."""
        return self.level - 1


Stage.PRIOR = Stage("prior")
