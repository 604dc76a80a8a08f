"""The one command line of the project: ``hvqeval``.

Each sub-command lives in its own module under ``hvqeval/commands`` and exposes a click
object named ``command``; heavy imports (torch, Flask, pandas) happen inside the command
bodies so ``hvqeval --help`` stays fast. Only commands that work are registered here.

User mistakes raise the packages' own error types (``models.errors.ModelsError``,
``hvqeval.errors.HvqevalError``, ``study_app.errors.StudyError``,
``analysis.errors.AnalysisError``); they are printed as one ``Error: ...`` line with exit
status 1, never as a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from analysis.errors import AnalysisError
from hvqeval import __version__
from hvqeval.errors import HvqevalError
from models.errors import ModelsError
from study_app.errors import StudyError

USER_ERRORS = (ModelsError, HvqevalError, StudyError, AnalysisError)

# Every module in hvqeval/commands exposing a click object named `command` is registered;
# `hvqeval --help` lists them in this order, then any others alphabetically.
COMMAND_ORDER = [
    "models", "data", "train", "sample", "reconstruct", "nll", "metrics", "neighbours",
    "features", "sweep", "plot", "study", "report", "demo",
]


class HvqevalGroup(click.Group):
    """Top-level group that turns user errors into one line and Ctrl-C into a clean exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted; finished work is kept: rerun the same command to continue.", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order, not alphabetical


@click.group(cls=HvqevalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hvqeval")
def cli() -> None:
    """Train, sample, evaluate and study hierarchical autoregressive image models.

    Implements De Fauw, Dieleman, Simonyan (2019), "Hierarchical Autoregressive Image
    Models with Auxiliary Decoders", with IS/FID, likelihood bounds, nearest neighbours,
    human-study web app and the paper's tables.
    """


def _command_modules() -> list[str]:
    import hvqeval.commands as package

    found = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    return [n for n in COMMAND_ORDER if n in found] + sorted(found - set(COMMAND_ORDER))


for _name in _command_modules():
    _module = importlib.import_module(f"hvqeval.commands.{_name}")
    cli.add_command(_module.command)


def main() -> None:
    cli(prog_name="hvqeval")
