"""Exceptions of the training/sampling stack that describe a user mistake.

Library code raises these with a message that names the problem and what to do, in the
library's own terms (arguments, card values, stages), never a command-line flag. Two
attributes let a caller that knows where the input came from say so: ``argument`` names the
function argument at fault (``data``, ``split``, ``run_dir``, ...), and a
``MissingStageError`` carries the stage to train first. The ``hvqeval`` CLI turns them into
one ``Error: ...`` line with its own option names (never a traceback).
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base class: a problem with user input (card, data, checkpoint, run folder)."""

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument  # the function argument whose value is at fault, if one is


class ConfigError(ModelsError):
    """A model card is malformed: unknown key, wrong type, value outside its range."""


class DataError(ModelsError):
    """A dataset is missing, malformed or does not fit the model card."""


class CheckpointError(ModelsError):
    """A checkpoint or run folder is missing, corrupt or belongs to another card."""


class MissingStageError(CheckpointError):
    """A run lacks the checkpoint of ``stage``, which must be trained before what was asked."""

    def __init__(self, message: str, *, run_dir: str, card_name: str, stage: str):
        super().__init__(message, argument="run_dir")
        self.run_dir, self.card_name, self.stage = run_dir, card_name, stage
