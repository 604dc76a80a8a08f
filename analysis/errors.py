"""Exceptions of the analysis layer that describe a user mistake (printed by the CLI as one line)."""


class AnalysisError(Exception):
    """Base class: malformed responses, results or options for a report."""


class ResponsesError(AnalysisError):
    """A study export (CSV or database rows) that breaks the column contract; names row and column."""


class ResultsError(AnalysisError):
    """A metrics results store that is unreadable or would mix incomparable numbers in one column."""
