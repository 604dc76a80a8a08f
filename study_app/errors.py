"""Exceptions of the study app that describe a user mistake (printed by the CLI as one line)."""


class StudyError(Exception):
    """Base class: bad input when creating, serving or exporting a study."""


class PairingError(StudyError):
    """The pairing design asked for cannot exist (sizes, uses and pair count do not fit)."""


class StudyNotFoundError(StudyError):
    """No study of that name in the database."""


class StudyExistsError(StudyError):
    """A study of that name already exists."""


class StudySourceError(StudyError):
    """A sample set or real-image dataset cannot provide the images a study needs."""


class DatabaseError(StudyError):
    """The study database is unreachable or its schema is not the one this code expects."""


class ConfigurationError(StudyError):
    """The server configuration is unsafe or incomplete (secret key, admin password)."""
