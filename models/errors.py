"""Exceptions of the training/sampling stack that describe a user mistake.

Library code raises these with a message that says what was found and what to do; the
``hvqeval`` CLI prints the message as one line and exits non-zero (never a traceback).
"""


class ModelsError(Exception):
    """Base class: a problem with user input (card, data, checkpoint, run folder)."""


class ConfigError(ModelsError):
    """A model card is malformed: unknown key, wrong type, value outside its range."""


class DataError(ModelsError):
    """A dataset is missing, malformed or does not fit the model card."""


class CheckpointError(ModelsError):
    """A checkpoint or run folder is missing, corrupt or belongs to another card."""
