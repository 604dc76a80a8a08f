"""``hvqeval study codes``: every rater's completion code, and a platform's submissions checked."""

from __future__ import annotations

import json
import sys

import click

from hvqeval.commands.study.database import database_url_of, db_option


@click.command(name="codes")
@click.argument("study_name", metavar="STUDY")
@click.option(
    "--check",
    "check_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A platform's CSV of submissions (participant id and pasted completion code) to check.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document) instead of text.")
@db_option
def codes_cmd(study_name, check_file, as_json, database_url):
    """The completion code of every rater; with --check, the submissions whose code does not match
    (exit status 1 when there is any)."""
    from dataclasses import asdict

    from study_app.codes import check_codes, rater_codes, read_pasted
    from study_app.db import open_database

    with open_database(database_url_of(database_url)) as engine:
        # a check meets visitors too: a platform may list someone who never consented
        stored = rater_codes(engine, study_name, visitors=check_file is not None)
    if check_file is None:
        if as_json:
            click.echo(json.dumps([asdict(r) for r in stored]))
            return
        click.echo("participant\tplatform\tanswered\tcompletion_code")  # a TSV with its header
        for r in stored:
            click.echo(
                f"{r.participant}\t{r.platform or '-'}\t{r.answered}\t{r.completion_code or '-'}"
            )
        return
    pasted = read_pasted(check_file)
    mismatches = check_codes(stored, pasted)
    if as_json:
        click.echo(
            json.dumps({"checked": len(pasted), "mismatches": [asdict(m) for m in mismatches]})
        )
    else:
        for m in mismatches:
            click.echo(
                f"{m.participant}\tpasted {m.pasted or '-'}\tstored {m.stored or '-'}\t{m.problem}"
            )
        click.echo(f"{len(pasted)} submission(s) checked, {len(mismatches)} mismatch(es)", err=True)
    if mismatches:
        sys.exit(1)
