"""``hvqeval study create rating | pairwise``: a study from sample sets (and real images)."""

from __future__ import annotations

import json

import click

from hvqeval.commands.study.database import database_url_of, db_option
from hvqeval.commands.study.real_images import create_with_real_images


def _classes(value: str):
    from study_app.errors import StudyError

    try:
        if "," in value:
            return tuple(int(v) for v in value.split(",") if v.strip())
        return int(value)
    except ValueError:
        raise StudyError(
            f"--classes: give a count (20) or class ids (649,388,933), got {value!r}"
        ) from None


def _count(text: str) -> tuple[str, int]:
    from study_app.errors import StudyError

    label, sep, value = text.partition("=")
    if not sep or not label.strip() or not value.strip().isdigit():
        raise StudyError(
            f"--count: expected LABEL=N (images per class of that source), got {text!r}"
        )
    return label.strip(), int(value)


def _common(f):
    options = [
        click.option("--name", required=True, help="Study name (letters, digits, - and _)."),
        click.option(
            "--classes",
            "classes",
            required=True,
            help="How many classes (chosen with --seed among those every set has), or a list of class ids.",
        ),
        click.option(
            "--per-class",
            type=int,
            default=50,
            show_default=True,
            help="Images per class and source.",
        ),
        click.option(
            "--tasks-per-rater",
            type=int,
            default=50,
            show_default=True,
            help="Answers a rater gives before the completion code.",
        ),
        click.option(
            "--lease-seconds",
            type=int,
            default=600,
            show_default=True,
            help="An unanswered task returns to the pool after this long.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--real-split", default="val", show_default=True, help="Dataset split for real images."
        ),
        click.option(
            "--examples-real",
            default=None,
            metavar="DATASET",
            help="Dataset for the example real images on the instructions page when no source is real.",
        ),
        click.option(
            "--instance-dir",
            default="instance",
            show_default=True,
            help="Where the default database and the preprocessed real images live.",
        ),
        click.option(
            "--completion-code",
            default=None,
            help="One completion code for every rater (Prolific's study code) [default: random per rater].",
        ),
        click.option(
            "--completion-url",
            default=None,
            help="Where a rater is redirected once the last answer is stored (Prolific's completion URL).",
        ),
        click.option(
            "--no-examples",
            is_flag=True,
            help="Create the study even when a source has no image left for the instructions' examples.",
        ),
        click.option(
            "--catch-fraction",
            type=float,
            default=0.0,
            show_default=True,
            help="Attention checks: share of catch items (an image against a corrupted copy, or a "
            "corrupted image) mixed unannounced into each rater's answers, e.g. 0.1.",
        ),
        click.option(
            "--practice",
            type=int,
            default=0,
            show_default=True,
            help="Practice items shown first, labelled as practice (stored, never analysed).",
        ),
        click.option(
            "--exposure-ms",
            type=int,
            default=None,
            help="Hide the images this many ms after they appear (HYPE-style); recorded with each answer.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        db_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _report(summary, database_url: str, as_json: bool) -> None:
    from dataclasses import asdict

    from sqlalchemy.engine import make_url

    if as_json:
        click.echo(
            json.dumps(
                {**asdict(summary), "database_url": make_url(database_url).render_as_string()}
            )
        )
        return
    click.echo(
        f"created {summary.kind} study {summary.name}: {summary.items} items, "
        f"{summary.answers_needed} answers needed, classes {list(summary.classes)}"
    )
    click.echo(
        f"attention checks: {summary.catch_items} catch item(s) per rater, "
        f"{summary.practice_items} practice item(s) first, made from "
        f"{summary.check_images} image(s) no counted task shows"
        if summary.catch_items or summary.practice_items
        else "attention checks: none (no catch or practice items)"
    )
    click.echo(
        f"exposure: images hidden {summary.exposure_ms} ms after they appear"
        if summary.exposure_ms
        else "exposure: no limit (images stay until answered)"
    )
    click.echo(f"raters' link: <server>/s/{summary.public_id}/?PROLIFIC_PID=<participant id>")


@click.group(name="create")
def command() -> None:
    """Create a study from sample sets (and optionally real images)."""


@command.command(name="rating")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="LABEL=SET",
    help="A sample set to rate, named LABEL in the export (repeatable).",
)
@click.option(
    "--real",
    "reals",
    multiple=True,
    metavar="LABEL=DATASET",
    help="Real images from a dataset (same preprocessing as training), rated like a model.",
)
@click.option(
    "--ratings-per-item",
    type=int,
    default=3,
    show_default=True,
    help="k distinct raters per image.",
)
@_common
def create_rating(models, reals, ratings_per_item, **common):
    """Realism ratings 1-5 (Table 2): every image rated by k different raters."""
    from study_app.create import SourceSpec

    sources = tuple(SourceSpec.parse(m) for m in models) + tuple(
        SourceSpec.parse(r, force_real=True) for r in reals
    )
    _create_and_report(common, kind="rating", sources=sources, answers_per_item=ratings_per_item)


@command.command(name="pairwise")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="LABEL=SET",
    help="A source to compare (sample set, or LABEL=real:DATASET); repeat for M >= 2 sources.",
)
@click.option(
    "--a",
    "source_a",
    default=None,
    metavar="LABEL=SET",
    help="Two-source form: source A (as --source).",
)
@click.option(
    "--b", "source_b", default=None, metavar="LABEL=SET", help="Two-source form: source B."
)
@click.option(
    "--pair",
    "pairs",
    multiple=True,
    metavar="A:B",
    help="Compare only these source pairs (A shown as model A in the export) [default: all pairs].",
)
@click.option(
    "--uses",
    type=int,
    default=None,
    help="Uses of each sample per source pair [default: 10]; the smaller source's samples are used "
    "as evenly as the counts allow.",
)
@click.option(
    "--count",
    "counts",
    multiple=True,
    metavar="LABEL=N",
    help="Images per class of one source, when it differs from --per-class.",
)
@click.option(
    "--pairs-per-class",
    type=int,
    default=None,
    help="Instead of --uses: exactly this many pairs per class and source pair.",
)
@click.option(
    "--raters-per-pair", type=int, default=3, show_default=True, help="k distinct raters per pair."
)
@_common
def create_pairwise(
    sources, source_a, source_b, pairs, uses, counts, pairs_per_class, raters_per_pair, **common
):
    """Side-by-side preference (Tables 3 and 5) among two or more sources: which image looks the
    most realistic (or, when every pair holds real images, which is real)."""
    from study_app.create import SourceSpec
    from study_app.errors import StudyError
    from study_app.source_pairs import parse_pair

    texts = [t for t in (source_a, source_b) if t] + list(sources)
    if len(texts) < 2:
        raise StudyError(
            "a pairwise study needs two or more sources: --source LABEL=SET (repeat), or --a and --b"
        )
    _create_and_report(
        common,
        kind="pairwise",
        sources=tuple(SourceSpec.parse(t) for t in texts),
        answers_per_item=raters_per_pair,
        pairs_per_class=pairs_per_class,
        pairs=tuple(parse_pair(p) for p in pairs),
        uses=uses,
        counts=tuple(_count(c) for c in counts),
    )


def _create_and_report(common: dict, **kind_settings) -> None:
    """Create the study from the options every kind shares (``_common``) and its own settings,
    then print its summary."""
    from study_app.create import StudySettings

    instance_dir, as_json = common.pop("instance_dir"), common.pop("as_json")
    url = database_url_of(common.pop("database_url"), instance_dir)
    common["classes"] = _classes(common["classes"])  # the rest are StudySettings' own names
    settings = StudySettings(**kind_settings, **common)
    _report(create_with_real_images(url, settings, instance_dir), url, as_json)
