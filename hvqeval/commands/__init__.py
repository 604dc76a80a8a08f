"""The sub-commands of ``hvqeval``, one module each (registered by the table in ``hvqeval.cli``).

Helpers shared by several commands live here: library errors name the problem, and the
command line adds the option it came from.
"""

from __future__ import annotations

import functools

import click

# ``Context.meta`` key: the command under way keeps its finished work when interrupted
RESUMABLE = "hvqeval.resumable"


def resumable(func):
    """Mark a command that keeps its finished work on Ctrl-C (checkpoints, stored rows, written
    batches) and continues from it when rerun: the interrupt message says so (``hvqeval.cli``)."""

    @functools.wraps(func)
    def marked(*args, **kwargs):
        click.get_current_context().meta[RESUMABLE] = True
        return func(*args, **kwargs)

    return marked


def device_from_option(value: str | None):
    """``--device``: the torch device (``models.resolve_device``), or a usage error naming the flag."""
    from models import ConfigError, resolve_device

    try:
        return resolve_device(value)
    except ConfigError as err:
        raise click.BadParameter(str(err), param_hint="'--device'") from None
