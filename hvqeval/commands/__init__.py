"""The sub-commands of ``hvqeval``, one module each (registered by the table in ``hvqeval.cli``).

Helpers shared by several commands live here: library errors name the problem, and the
command line adds the option it came from.
"""

from __future__ import annotations

import click


def device_from_option(value: str | None):
    """``--device``: the torch device (``models.resolve_device``), or a usage error naming the flag."""
    from models import ConfigError, resolve_device

    try:
        return resolve_device(value)
    except ConfigError as err:
        raise click.BadParameter(str(err), param_hint="'--device'") from None
