"""Exceptions of the study app that describe a user mistake (printed by the CLI as one line)."""


class StudyError(Exception):
    """Base class: bad input when creating, serving or exporting a study."""
