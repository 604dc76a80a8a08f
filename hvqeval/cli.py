"""The one command line of the project: ``hvqeval``.

``COMMANDS`` below is the whole command table: each sub-command lives in its own module
under ``hvqeval/commands`` and exposes a click object named ``command``. A module is imported
only when its command runs (or ``--help`` lists it), and heavy libraries (torch, Flask,
pandas) are imported inside the command bodies, so ``hvqeval metrics`` never loads the web app.

User mistakes raise the packages' own error types (``USER_ERRORS``); they are printed as one
``Error: ...`` line with exit status 1, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from hvqeval import __version__

# name -> module in hvqeval/commands; `hvqeval --help` lists them in this order.
COMMANDS = {
    "models": "hvqeval.commands.models",
    "data": "hvqeval.commands.data",
    "train": "hvqeval.commands.train",
    "sample": "hvqeval.commands.sample",
    "samples": "hvqeval.commands.samples",
    "reconstruct": "hvqeval.commands.reconstruct",
    "nll": "hvqeval.commands.nll",
    "metrics": "hvqeval.commands.metrics",
    "neighbours": "hvqeval.commands.neighbours",
    "features": "hvqeval.commands.features",
    "sweep": "hvqeval.commands.sweep",
    "plot": "hvqeval.commands.plot",
    "study": "hvqeval.commands.study",
    "report": "hvqeval.commands.report",
    "demo": "hvqeval.commands.demo",
    "predictability": "hvqeval.commands.predictability",
}

# module -> the base class of its user errors. Read from sys.modules, not imported: an error of
# a package can only have been raised once its errors module is loaded, and importing them all
# here would load torch and Flask for every command.
USER_ERRORS = {
    "models.errors": "ModelsError",
    "hvqeval.errors": "HvqevalError",
    "study_app.errors": "StudyError",
    "analysis.errors": "AnalysisError",
}


def user_error_types() -> tuple[type[Exception], ...]:
    """The user-error base classes of the packages loaded so far."""
    return tuple(
        getattr(sys.modules[module], name)
        for module, name in USER_ERRORS.items()
        if module in sys.modules
    )


def user_message(err: Exception, command: click.Command | None) -> str:
    """One line for a user error; the command line adds what only it knows.

    Library errors name the problem in the library's terms. When one names the argument at
    fault (``err.argument``) and the command has one option of that name, the option is put
    first (``--data: ...``); a ``MissingStageError`` gets the command that trains the stage.
    """
    text = str(err)
    stage = getattr(err, "stage", None)
    if stage is not None:
        flag = "--prior" if stage.is_prior else f"--level {stage.level}"
        text += f": hvqeval train --config {err.card_name} --out {err.run_dir} {flag}"
    flags = {
        max(option.opts, key=len)
        for option in _options(command)
        if option.name == getattr(err, "argument", None)
    }
    return f"{flags.pop()}: {text}" if len(flags) == 1 else text


def _options(command: click.Command | None) -> list[click.Option]:
    """Every option of ``command`` and of its sub-commands (``hvqeval data check --split``)."""
    if command is None:
        return []
    found = [p for p in command.params if isinstance(p, click.Option)]
    for sub in getattr(command, "commands", {}).values():
        found += _options(sub)
    return found


class HvqevalGroup(click.Group):
    """Top-level group: commands from the table, user and usage errors as one line, clean Ctrl-C.

    Commands can run other commands in the same process (``hvqeval demo``, ``hvqeval sweep``):
    ``depth`` counts the invocations under way, so only the outermost one prints the interrupt
    message (the inner ones still stop with status 130).
    """

    depth = 0

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)  # table order, not alphabetical

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name]).command

    def invoke(self, ctx: click.Context):
        HvqevalGroup.depth += 1
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            if HvqevalGroup.depth == 1:
                from hvqeval.commands import RESUMABLE

                if ctx.meta.get(RESUMABLE):
                    said = "finished work is kept: rerun the same command to continue."
                else:  # its files are written whole or not at all
                    said = "nothing half-written is left; rerun the command to start again."
                click.echo(f"\nInterrupted; {said}", err=True)
            ctx.exit(130)
        except click.UsageError as err:
            # A bad option or argument: one line naming it and where help is, not click's
            # usage block (usage, hint and error on four lines). Same exit status (2).
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            one_line = click.ClickException(f"{err.format_message()} (see '{where} --help')")
            one_line.exit_code = err.exit_code
            raise one_line from None
        except Exception as err:
            if isinstance(err, user_error_types()):
                command = self.get_command(ctx, ctx.invoked_subcommand or "")
                raise click.ClickException(user_message(err, command)) from None
            raise
        finally:
            HvqevalGroup.depth -= 1


@click.group(cls=HvqevalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hvqeval")
def cli() -> None:
    """Train, sample, evaluate and study hierarchical autoregressive image models.

    Implements De Fauw, Dieleman, Simonyan (2019), "Hierarchical Autoregressive Image
    Models with Auxiliary Decoders", with IS/FID, likelihood bounds, nearest neighbours,
    human-study web app and the paper's tables.
    """


def main() -> None:
    cli(prog_name="hvqeval")
