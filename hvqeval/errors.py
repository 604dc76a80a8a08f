"""Exceptions of the evaluation suite that describe a user mistake (printed as one line)."""


class HvqevalError(Exception):
    """Base class: bad input to an evaluation command (sample set, reference, weights, spec)."""


class SampleSetError(HvqevalError):
    """A sample set folder or its manifest is missing, malformed or does not match its files."""


class WeightsError(HvqevalError):
    """Pretrained weights are missing, unreadable or fail their checksum."""


class GenerationError(HvqevalError):
    """Bad input to sampling or reconstruction (run folder, classes, temperatures, --out)."""
