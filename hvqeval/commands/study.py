"""``hvqeval study``: create, serve and export human studies (paper Section 7.3, Appendix G).

hvqeval study create rating   --name NAME --model LABEL=SET ... [--real LABEL=DATASET] ...
hvqeval study create pairwise --name NAME --source LABEL=SET --source LABEL=SET ... [--pair A:B]
hvqeval study pairings --n-a 50 --n-b 50 --uses 10 --seed 0 [--out pairs.csv]
hvqeval study serve    [--bind 127.0.0.1:8000] [--workers 4] [--secret-key-file PATH]
hvqeval study export   --study NAME --out responses.csv
hvqeval study codes    STUDY [--check platform.csv]
hvqeval study list | open NAME | close NAME | migrate | hash-password
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

DB_HELP = (
    "SQLAlchemy URL of the study database (default: $HVQEVAL_STUDY_DATABASE_URL, else "
    "sqlite:///instance/study.sqlite3; deployments: postgresql+psycopg://user@host/db)."
)


def _database_url(value: str | None, instance_dir: str = "instance") -> str:
    from study_app.db import default_database_url, normalise_url

    return normalise_url(
        value or os.environ.get("HVQEVAL_STUDY_DATABASE_URL") or default_database_url(instance_dir)
    )


def _db_option(f):
    return click.option("--database-url", "database_url", default=None, help=DB_HELP)(f)


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
        _db_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _write_real_images(
    dataset_name: str,
    split: str,
    label: str,
    classes: list[int],
    count: int,
    size: int,
    seed: int,
    out: Path,
) -> Path:
    """``count`` real images per class as a sample set at ``out`` (``hvqeval samples
    from-dataset``: preprocessed as in training, the manifest naming the dataset)."""
    from hvqeval.image_import import ImageImportError, write_dataset_images
    from hvqeval.sample_set import MANIFEST_NAME
    from study_app.errors import StudySourceError

    if (Path(dataset_name) / MANIFEST_NAME).is_file():
        raise StudySourceError(
            f"--real {label}={dataset_name}: --real takes a dataset to draw real images from "
            f"(e.g. {label}=imagenet:/data/imagenet or {label}=shapes), but {dataset_name} is a "
            f"sample set; give it as --source {label}={dataset_name} (a `samples from-dataset` set "
            "counts as real images)"
        )
    if out.exists():
        shutil.rmtree(out)  # the study's own copy, rewritten by every create
    try:
        write_dataset_images(
            dataset_name,
            split,
            out,
            per_class=count,
            classes=classes,
            image_size=size,
            seed=seed,
            model=label,
        )
    except ImageImportError as err:
        raise StudySourceError(f"real images {label}: {err}") from None
    return out


def _create(url: str, settings, instance_dir: str):
    """Write the real images the study needs as sample sets, then create the study."""
    from dataclasses import replace

    from study_app.create import (
        EXAMPLES_PER_SOURCE,
        SourceSpec,
        choose_classes,
        create_study,
        generated_sources,
    )

    if any(s.real_dataset for s in settings.sources) or settings.examples_real:
        from study_app.catch_items import catch_count, check_settings

        check_settings(  # one line for a bad setting before any image is written
            settings.catch_fraction,
            settings.practice,
            settings.exposure_ms,
            settings.tasks_per_rater,
        )
        classes = choose_classes(settings)
        # beyond the tasks and examples, one image per check item that no counted task shows
        checks = catch_count(settings.catch_fraction, settings.tasks_per_rater) + settings.practice
        for_checks = -(-checks // len(classes)) if checks > 0 else 0
        size = generated_sources(settings)[0].image_size
        study_dir = Path(instance_dir).resolve() / "studies" / settings.name
        sources = []
        for spec in settings.sources:
            if spec.real_dataset:
                out = _write_real_images(
                    spec.real_dataset,
                    settings.real_split,
                    spec.label,
                    classes,
                    settings.count_of(spec.label) + EXAMPLES_PER_SOURCE + for_checks,
                    size,
                    settings.seed,
                    study_dir / f"real-{spec.label}",
                )
                spec = SourceSpec(spec.label, str(out), dataset=spec.real_dataset)
            sources.append(spec)
        examples_set = None
        if settings.examples_real and not any(s.dataset for s in sources):
            examples_set = str(
                _write_real_images(
                    settings.examples_real,
                    settings.real_split,
                    "examples-real",
                    classes[:1],
                    EXAMPLES_PER_SOURCE,
                    size,
                    settings.seed,
                    study_dir / "examples-real",
                )
            )
        settings = replace(
            settings, sources=tuple(sources), classes=tuple(classes), examples_real_set=examples_set
        )
    return create_study(url, settings, instance_dir)


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
    if summary.catch_items or summary.practice_items:
        click.echo(
            f"attention checks: {summary.catch_items} catch item(s) per rater, "
            f"{summary.practice_items} practice item(s) first, made from "
            f"{summary.check_images} image(s) no counted task shows"
        )
    click.echo(
        f"exposure: images hidden {summary.exposure_ms} ms after they appear"
        if summary.exposure_ms
        else "exposure: no limit (images stay until answered)"
    )
    click.echo(f"raters' link: <server>/s/{summary.public_id}/?PROLIFIC_PID=<participant id>")


@click.group(name="study")
def command() -> None:
    """Human realism-rating and pairwise-preference studies (web app, database, export)."""


@command.group(name="create")
def create() -> None:
    """Create a study from sample sets (and optionally real images)."""


@create.command(name="rating")
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
def create_rating(
    models,
    reals,
    ratings_per_item,
    name,
    classes,
    per_class,
    tasks_per_rater,
    lease_seconds,
    seed,
    real_split,
    examples_real,
    instance_dir,
    completion_code,
    completion_url,
    no_examples,
    catch_fraction,
    practice,
    exposure_ms,
    as_json,
    database_url,
):
    """Realism ratings 1-5 (Table 2): every image rated by k different raters."""
    from study_app.create import SourceSpec, StudySettings

    url = _database_url(database_url, instance_dir)
    sources = tuple(SourceSpec.parse(m) for m in models) + tuple(
        SourceSpec.parse(r, force_real=True) for r in reals
    )
    settings = StudySettings(
        name=name,
        kind="rating",
        sources=sources,
        classes=_classes(classes),
        per_class=per_class,
        answers_per_item=ratings_per_item,
        tasks_per_rater=tasks_per_rater,
        lease_seconds=lease_seconds,
        seed=seed,
        real_split=real_split,
        examples_real=examples_real,
        completion_code=completion_code,
        completion_url=completion_url,
        no_examples=no_examples,
        catch_fraction=catch_fraction,
        practice=practice,
        exposure_ms=exposure_ms,
    )
    _report(_create(url, settings, instance_dir), url, as_json)


@create.command(name="pairwise")
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
    sources,
    source_a,
    source_b,
    pairs,
    uses,
    counts,
    pairs_per_class,
    raters_per_pair,
    name,
    classes,
    per_class,
    tasks_per_rater,
    lease_seconds,
    seed,
    real_split,
    examples_real,
    instance_dir,
    completion_code,
    completion_url,
    no_examples,
    catch_fraction,
    practice,
    exposure_ms,
    as_json,
    database_url,
):
    """Side-by-side preference (Tables 3 and 5) among two or more sources: which image looks the
    most realistic (or, when every pair holds real images, which is real)."""
    from study_app.create import SourceSpec, StudySettings
    from study_app.errors import StudyError
    from study_app.source_pairs import parse_pair

    texts = [t for t in (source_a, source_b) if t] + list(sources)
    if len(texts) < 2:
        raise StudyError(
            "a pairwise study needs two or more sources: --source LABEL=SET (repeat), or --a and --b"
        )
    url = _database_url(database_url, instance_dir)
    settings = StudySettings(
        name=name,
        kind="pairwise",
        sources=tuple(SourceSpec.parse(t) for t in texts),
        classes=_classes(classes),
        per_class=per_class,
        answers_per_item=raters_per_pair,
        tasks_per_rater=tasks_per_rater,
        lease_seconds=lease_seconds,
        seed=seed,
        pairs_per_class=pairs_per_class,
        real_split=real_split,
        examples_real=examples_real,
        pairs=tuple(parse_pair(p) for p in pairs),
        uses=uses,
        counts=tuple(_count(c) for c in counts),
        completion_code=completion_code,
        completion_url=completion_url,
        no_examples=no_examples,
        catch_fraction=catch_fraction,
        practice=practice,
        exposure_ms=exposure_ms,
    )
    _report(_create(url, settings, instance_dir), url, as_json)


def _count(text: str) -> tuple[str, int]:
    from study_app.errors import StudyError

    label, sep, value = text.partition("=")
    if not sep or not label.strip() or not value.strip().isdigit():
        raise StudyError(
            f"--count: expected LABEL=N (images per class of that source), got {text!r}"
        )
    return label.strip(), int(value)


@command.command(name="pairings")
@click.option("--n-a", type=int, required=True, help="Samples of model A.")
@click.option("--n-b", type=int, required=True, help="Samples of model B.")
@click.option("--uses", type=int, default=None, help="Uses of every sample (both sides).")
@click.option(
    "--uses-a", type=int, default=None, help="Uses of every A sample (instead of --uses)."
)
@click.option(
    "--uses-b", type=int, default=None, help="Uses of every B sample (instead of --uses)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the design to this CSV.",
)
def pairings(n_a, n_b, uses, uses_a, uses_b, seed, out):
    """Print a pairing design (CSV columns pair, a, b): every sample used exactly u times, no repeated pair."""
    import csv
    import io

    from study_app.errors import PairingError
    from study_app.pairing import design_pairs

    uses_a = uses_a if uses_a is not None else uses
    uses_b = uses_b if uses_b is not None else uses
    if uses_a is None or uses_b is None:
        raise PairingError("give --uses (or both --uses-a and --uses-b)")
    design = design_pairs(n_a, n_b, uses_a, uses_b, seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["pair", "a", "b"])
    writer.writerows((i, a, b) for i, (a, b) in enumerate(design.pairs))
    click.echo(buffer.getvalue(), nl=False)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(buffer.getvalue())
    click.echo(
        f"{design.num_pairs} pairs: {n_a} A samples x {uses_a} uses, {n_b} B samples x {uses_b} uses, "
        f"no repeated pair (seed {seed})",
        err=True,
    )


@command.command(name="serve")
@click.option(
    "--bind", default="127.0.0.1:8000", show_default=True, help="Address to listen on (HOST:PORT)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="gunicorn worker processes [default: one per core].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads per worker [default: 1 on SQLite, 2 on PostgreSQL].",
)
@click.option(
    "--secret-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the secret key that signs sessions [default: $HVQEVAL_SECRET_KEY_FILE, "
    "else $HVQEVAL_SECRET_KEY].",
)
@click.option("--access-log", default=None, help="Access log file ('-' for stderr).")
@click.option(
    "--instance-dir",
    default="instance",
    show_default=True,
    help="Image cache (and default database).",
)
@_db_option
def serve(bind, workers, threads, secret_key_file, access_log, instance_dir, database_url):
    """Run the study web app under gunicorn. Needs a secret key; admin pages need HVQEVAL_ADMIN_PASSWORD(_HASH).

    Every setting, the database (it must exist: create a study first) and the port are checked
    before anything is served; the first problem is one line.
    """
    from study_app.db import current_revision, head_revision, make_engine, upgrade
    from study_app.server import check_before_serving
    from study_app.server import serve as run_server
    from study_app.settings import check_settings, settings_from_environment

    config = settings_from_environment(os.environ)
    config["DATABASE_URL"] = _database_url(database_url, instance_dir)
    config["INSTANCE_DIR"] = str(Path(instance_dir).resolve())
    key_file = secret_key_file or os.environ.get("HVQEVAL_SECRET_KEY_FILE")
    if key_file:
        config["SECRET_KEY"] = _read_secret_key(key_file)
    check_settings(config)  # a bad setting is one line before the database is even opened
    engine = make_engine(config["DATABASE_URL"])  # a missing SQLite file is an error, never created
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision is not None and revision != head_revision():
        upgrade(config["DATABASE_URL"])  # a study database of an older version of this code
    config = check_before_serving(config, bind)
    _prerender(config)

    def ready(workers, threads):
        click.echo(
            f"serving on http://{bind} with {workers} worker(s) x {threads} thread(s)", err=True
        )

    def stopped():
        click.echo(f"stopped serving on http://{bind}", err=True)

    run_server(
        config,
        bind=bind,
        workers=workers,
        threads=threads,
        access_log=access_log,
        on_ready=ready,
        on_exit=stopped,
    )


def _prerender(config: dict) -> None:
    """Every study image upscaled before serving: a progress bar on a terminal, else a line at
    the start, at every tenth and at the end (a service's log shows that start-up is busy)."""
    import time

    from tqdm import tqdm

    from study_app.server import prerender_before_serving

    on_terminal = sys.stderr.isatty()
    bar, started, next_line = None, time.monotonic(), 0

    def shown(done: int, total: int) -> None:
        nonlocal bar, next_line
        if on_terminal:
            if bar is None:
                bar = tqdm(total=total, desc="rendering images", unit="image")
            bar.update(1)
            return
        if done == 1:
            click.echo(f"upscales of {total} image(s): rendering those not yet rendered", err=True)
        if done >= next_line or done == total:
            click.echo(
                f"rendering images: {done}/{total} ({time.monotonic() - started:.0f} s)", err=True
            )
            next_line = done + max(1, total // 10)

    try:
        prerender_before_serving(config, shown)
    finally:
        if bar is not None:
            bar.close()


def _read_secret_key(path: str) -> str:
    from study_app.errors import ConfigurationError

    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigurationError(
            f"--secret-key-file {path}: {err.strerror or err}; write a key there with "
            "`python -c 'import secrets; print(secrets.token_hex(32))' > KEYFILE`"
        ) from None
    if not key:
        raise ConfigurationError(
            f"--secret-key-file {path} is empty; write a key of 16 or more random characters"
        )
    return key


@command.command(name="export")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV file to write.")
@_db_option
def export_cmd(study_name, out, database_url):
    """Write every answer as one CSV row (columns documented in the README, "Human studies")."""
    from study_app.export import write_csv

    count = write_csv(_database_url(database_url), study_name, out)
    click.echo(f"wrote {count} answers to {out}", err=True)


@command.command(name="codes")
@click.argument("study_name", metavar="STUDY")
@click.option(
    "--check",
    "check_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A platform's CSV of submissions (participant id and pasted completion code) to check.",
)
@click.option("--json", "as_json", is_flag=True)
@_db_option
def codes_cmd(study_name, check_file, as_json, database_url):
    """The completion code of every rater; with --check, the submissions whose code does not match
    (exit status 1 when there is any)."""
    from dataclasses import asdict

    from study_app.codes import check_codes, rater_codes, read_pasted
    from study_app.db import open_database

    with open_database(_database_url(database_url)) as engine:
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


@command.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@_db_option
def list_cmd(as_json, database_url):
    """Studies with their progress."""
    from dataclasses import asdict

    from study_app.db import open_database
    from study_app.progress import study_names, study_progress

    with open_database(_database_url(database_url)) as engine:
        found = [study_progress(engine, n) for n in study_names(engine)]
    if as_json:
        click.echo(
            json.dumps([{k: v for k, v in asdict(p).items() if k != "groups"} for p in found])
        )
        return
    for p in found:
        click.echo(
            f"{p.name:24s} {p.kind:9s} {p.status:7s} {p.done}/{p.needed} answers, {p.raters_text}, "
            f"{p.checks_text}, link /s/{p.public_id}/"
        )
    if not found:
        click.echo("no studies", err=True)


def _set_status(name: str, status: str, database_url: str | None) -> None:
    from study_app.db import open_database, session_scope
    from study_app.progress import set_status
    from study_app.schema import no_study_named

    with open_database(_database_url(database_url)) as engine:
        if not set_status(engine, name, status):
            with session_scope(engine, read_only=True) as session:
                raise no_study_named(session, name)
    click.echo(f"study {name} is {status}", err=True)


@command.command(name="open")
@click.argument("name")
@_db_option
def open_cmd(name, database_url):
    """Open a study: raters get tasks."""
    _set_status(name, "open", database_url)


@command.command(name="close")
@click.argument("name")
@_db_option
def close_cmd(name, database_url):
    """Close a study: no new tasks (answers to tasks already handed out are still stored)."""
    _set_status(name, "closed", database_url)


@command.command(name="migrate")
@_db_option
def migrate(database_url):
    """Create or upgrade the study database schema (Alembic)."""
    from study_app.db import current_revision, make_engine, upgrade

    url = _database_url(database_url)
    upgrade(url)
    engine = make_engine(url)
    try:
        click.echo(f"schema at revision {current_revision(engine)}", err=True)
    finally:
        engine.dispose()


@command.command(name="hash-password")
def hash_password():
    """Read an admin password from the terminal and print its hash for HVQEVAL_ADMIN_PASSWORD_HASH."""
    from werkzeug.security import generate_password_hash

    password = click.prompt("admin password", hide_input=True, confirmation_prompt=True, err=True)
    click.echo(generate_password_hash(password))
    sys.stdout.flush()
