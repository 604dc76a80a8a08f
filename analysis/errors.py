"""Exceptions of the analysis layer that describe a user mistake (printed by the CLI as one line)."""


class AnalysisError(Exception):
    """Base class: malformed responses, results or options for a report."""
