"""``hvqeval study`` commands end to end, the migration matching the models, and the
Flask-free export used by the analysis helper."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from study_schemas import engine_for

from hvqeval.cli import cli
from study_app import assign
from study_app.db import session_scope
from study_app.export import EXPORT_COLUMNS, export_rows
from study_app.schema import Base, Source, Study


def _invoke(*args):
    return CliRunner().invoke(cli, ["study", *args], catch_exceptions=False)


def _create_with_real_images(name, sets, db_url, instance, *extra):
    """`study create rating` of model ff and real shapes images (2 classes of 3, 2 ratings per
    item) into ``instance``; ``extra`` options after these (a later one wins)."""
    return _invoke(
        "create",
        "rating",
        "--name",
        name,
        "--model",
        f"ff={sets['ff'].path}",
        "--real",
        "real=shapes",
        "--classes",
        "2",
        "--per-class",
        "3",
        "--ratings-per-item",
        "2",
        "--database-url",
        db_url,
        "--instance-dir",
        str(instance),
        *extra,
    )


def test_create_rating_with_real_images_then_answer_and_export(db_url, sets, tmp_path):
    result = _create_with_real_images(
        "table2", sets, db_url, tmp_path / "inst", "--model", f"msp={sets['msp'].path}", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (
        summary["items"] == 3 * 2 * 3 and summary["answers_needed"] == 36
    )  # 3 sources x 2 classes x 3 images
    engine = engine_for(db_url)
    with session_scope(engine) as s:
        study = s.query(Study).filter_by(name="table2").one()
        s.expunge(study)
        real = s.query(Source).filter_by(label="real").one()
    assert real.is_real and real.dataset == "shapes"
    assert (tmp_path / "inst" / "studies" / "table2" / "real-real" / "manifest.json").is_file()
    rater = assign.enter(engine, study, "P1").rater_id
    assign.record_consent(engine, rater)
    for value in (5, "unknown"):
        task = assign.next_task(engine, study.public_id, rater)
        assign.submit(
            engine,
            study.public_id,
            rater,
            task.token,
            value,
            "image-failed" if value == "unknown" else None,
            700,
        )
    out = tmp_path / "responses.csv"
    result = _invoke("export", "--study", "table2", "--out", str(out), "--database-url", db_url)
    assert result.exit_code == 0, result.output
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == EXPORT_COLUMNS
        rows = list(reader)
    assert [(r["rating"], r["choice"], r["unknown_reason"]) for r in rows] == [
        ("5", "", ""),
        ("", "unknown", "image-failed"),
    ]
    assert all(
        r["kind"] == "rating"
        and r["rater"] == "P1"
        and r["model_b"] == ""
        and r["left"] == "a"
        and r["response_ms"] == "700"
        for r in rows
    )
    assert all(r["model_a"] in ("ff", "msp", "real") and "/" in r["sample_a"] for r in rows)
    # --out NAME.csv.gz is gzip, as the reports read it (it was plain text under a .gz name)
    import gzip

    from analysis.responses import read_responses_csv

    packed = tmp_path / "responses.csv.gz"
    result = _invoke("export", "--study", "table2", "--out", str(packed), "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == out.read_bytes()
    assert read_responses_csv(packed).equals(read_responses_csv(out))


def test_imported_sets_and_real_images_from_samples_commands_make_a_study(db_url, sets, tmp_path):
    """A folder imported with ``samples import`` is a model; a ``samples from-dataset`` set is real."""
    from PIL import Image

    for c in (3, 5):
        for i in range(6):
            (tmp_path / "biggan" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(sets["msp"].uint8(i)).save(tmp_path / "biggan" / str(c) / f"{i}.png")
    imported, real = tmp_path / "imported", tmp_path / "real"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "samples",
            "import",
            str(tmp_path / "biggan"),
            "--model",
            "BigGAN",
            "--out",
            str(imported),
            "--classes-of",
            "shapes",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "samples",
            "from-dataset",
            "shapes",
            "--per-class",
            "6",
            "--classes",
            "3,5",
            "--image-size",
            "8",
            "--out",
            str(real),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    result = _invoke(
        "create",
        "rating",
        "--name",
        "mixed",
        "--model",
        f"ff={sets['ff'].path}",
        "--model",
        f"biggan={imported}",
        "--model",
        f"photo={real}",
        "--classes",
        "3,5",
        "--per-class",
        "2",
        "--database-url",
        db_url,
    )
    assert result.exit_code == 0, result.output
    with session_scope(engine_for(db_url)) as s:
        found = {src.label: (src.is_real, src.dataset) for src in s.query(Source)}
    assert found == {"ff": (False, None), "biggan": (False, None), "photo": (True, "shapes")}


def test_create_pairwise_list_close_open(db_url, sets, tmp_path):
    result = _invoke(
        "create",
        "pairwise",
        "--name",
        "table5",
        "--a",
        f"ff={sets['ff'].path}",
        "--b",
        f"msp={sets['msp'].path}",
        "--classes",
        "3,5",
        "--per-class",
        "4",
        "--pairs-per-class",
        "8",
        "--raters-per-pair",
        "3",
        "--database-url",
        db_url,
    )
    assert result.exit_code == 0, result.output
    assert "16 items, 48 answers needed" in result.output  # 2 classes x 8 pairs, k = 3
    listed = json.loads(_invoke("list", "--json", "--database-url", db_url).output)
    assert [(s["name"], s["kind"], s["status"], s["needed"]) for s in listed] == [
        ("table5", "pairwise", "open", 48)
    ]
    assert _invoke("close", "table5", "--database-url", db_url).exit_code == 0
    assert (
        json.loads(_invoke("list", "--json", "--database-url", db_url).output)[0]["status"]
        == "closed"
    )
    assert _invoke("open", "table5", "--database-url", db_url).exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "create",
                "pairwise",
                "--name",
                "x",
                "--a",
                "ff={ff}",
                "--b",
                "msp={msp}",
                "--classes",
                "1",
                "--per-class",
                "4",
                "--pairs-per-class",
                "10",
            ],
            "infeasible pairing",
        ),
        (
            [
                "create",
                "rating",
                "--name",
                "x",
                "--model",
                "ff={ff}",
                "--classes",
                "1",
                "--per-class",
                "7",
            ],
            "only 0 class(es) have 7 images",
        ),
        (
            ["create", "rating", "--name", "x", "--model", "ff=/nonexistent", "--classes", "1"],
            "source ff: /nonexistent does not exist",
        ),
        # a folder of images that is no sample set yet: the command that makes one
        (
            ["create", "rating", "--name", "x", "--model", "ff={tmp}", "--classes", "1"],
            "is not a sample set (manifest.json is missing); make one from a folder of images "
            "with `hvqeval samples import",
        ),
        (
            ["create", "rating", "--name", "x", "--model", "ff", "--classes", "1"],
            "expected LABEL=SAMPLE_SET",
        ),
        (
            ["create", "rating", "--name", "bad name!", "--model", "ff={ff}", "--classes", "1"],
            "study name",
        ),
        # an unknown study's name: every command lists the studies there are
        (["export", "--study", "nope", "--out", "{tmp}/x.csv"], "no study named 'nope' (studies:"),
        (["close", "nope"], "no study named 'nope' (studies:"),
        (["open", "nope"], "no study named 'nope' (studies:"),
        (["codes", "nope"], "no study named 'nope' (studies:"),
    ],
)
def test_user_mistakes_are_one_line_errors(db_url, sets, tmp_path, args, message):
    args = [a.format(ff=sets["ff"].path, msp=sets["msp"].path, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["study", *args, "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert (
        result.output.startswith("Error: ")
        and message in result.output
        and "Traceback" not in result.output
    )


def test_a_failed_create_leaves_no_database_file_behind(sets, tmp_path):
    """A create that cannot make its study (here: too few images) removes the SQLite file it
    made, so later commands still say that there is no study database; an existing file stays."""
    path = tmp_path / "new.sqlite3"
    args = ["create", "rating", "--name", "r", "--model", f"ff={sets['ff'].path}", "--classes", "1"]
    failed = CliRunner().invoke(
        cli, ["study", *args, "--per-class", "999", "--database-url", f"sqlite:///{path}"]
    )
    assert failed.exit_code == 1 and "999 images" in failed.output
    assert not list(tmp_path.glob("new.sqlite3*"))
    listed = CliRunner().invoke(cli, ["study", "list", "--database-url", f"sqlite:///{path}"])
    assert listed.exit_code == 1 and "no study database" in listed.output
    made = _invoke(*args, "--per-class", "2", "--database-url", f"sqlite:///{path}")
    assert made.exit_code == 0 and path.is_file()
    assert "attention checks: none" in made.output  # the settings are echoed, checks or not
    again = CliRunner().invoke(
        cli,
        [
            "study",
            *args,
            "--name",
            "r2",
            "--per-class",
            "999",
            "--database-url",
            f"sqlite:///{path}",
        ],
    )
    assert again.exit_code == 1 and path.is_file()  # the study made before is kept
    listed = _invoke("list", "--database-url", f"sqlite:///{path}")
    assert listed.output.startswith("r ")


def test_duplicate_study_name_is_refused(db_url, sets):
    args = [
        "create",
        "rating",
        "--name",
        "once",
        "--model",
        f"ff={sets['ff'].path}",
        "--classes",
        "1",
        "--per-class",
        "2",
        "--database-url",
        db_url,
    ]
    assert _invoke(*args).exit_code == 0
    again = CliRunner().invoke(cli, ["study", *args])
    assert again.exit_code == 1 and "already exists" in again.output


def test_serve_refuses_to_start_without_a_secret_key(db_url, monkeypatch):
    monkeypatch.delenv("HVQEVAL_SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url])
    assert result.exit_code == 1 and "HVQEVAL_SECRET_KEY" in result.output


def test_migrations_create_exactly_the_models_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_export_needs_no_flask(sets, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'noflask.sqlite3'}"
    _invoke(
        "create",
        "rating",
        "--name",
        "noflask",
        "--model",
        f"ff={sets['ff'].path}",
        "--classes",
        "1",
        "--per-class",
        "2",
        "--database-url",
        db_url,
    )
    code = (
        "import sys; from study_app.export import read_export; "
        f"rows = read_export({db_url!r}, ['noflask']); "
        "assert rows == [] and 'flask' not in sys.modules, sorted(m for m in sys.modules if 'flask' in m); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert export_rows(engine_for(db_url), "noflask") == []


def test_hash_password_prints_only_a_hash_that_checks():
    from werkzeug.security import check_password_hash

    result = CliRunner().invoke(cli, ["study", "hash-password"], input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert check_password_hash(result.stdout.strip(), "s3cret-pass")
    assert not check_password_hash(result.stdout.strip(), "other")


@pytest.mark.parametrize("database", [None, "sqlite:///deep/er/study.sqlite3"])
def test_a_failed_create_leaves_no_file_and_no_folder(sets, tmp_path, monkeypatch, database):
    """The default database's instance folder, or the folders of a given SQLite path, are made
    by the create and removed again with the database file when the study cannot be made."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("HVQEVAL_STUDY_DATABASE_URL", raising=False)
    where = ["--database-url", database] if database else []
    too_many = ["--model", f"ff={sets['ff'].path}", "--classes", "1", "--per-class", "100"]
    result = CliRunner().invoke(
        cli, ["study", "create", "rating", "--name", "x", *too_many, *where]
    )
    assert result.exit_code == 1 and "ask for fewer classes" in result.output, result.output
    assert list(work.iterdir()) == []
    (work / "instance").mkdir()  # a folder that was there before stays
    result = CliRunner().invoke(
        cli, ["study", "create", "rating", "--name", "x", *too_many, *where]
    )
    assert result.exit_code == 1 and [p.name for p in work.iterdir()] == ["instance"]


def test_database_urls_are_normalised_or_refused():
    from study_app.db import normalise_url
    from study_app.errors import DatabaseError

    assert normalise_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalise_url("postgres://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert normalise_url("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"
    for bad in ("mysql://u@h/db", "not a url"):
        with pytest.raises(DatabaseError):
            normalise_url(bad)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
@pytest.mark.parametrize("command", [["list"], ["export", "--study", "s", "--out", "s.csv"]])
def test_an_in_memory_sqlite_database_is_refused_in_one_line(url, command, tmp_path, monkeypatch):
    """It keeps nothing (each connection gets its own, gone when it closes): was a traceback."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["study", *command, "--database-url", url])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: the database URL names an in-memory SQLite database")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_is_one_line(tmp_path):
    result = CliRunner().invoke(
        cli, ["study", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1 and result.output.startswith(
        "Error: cannot reach the study database"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "command", [["export", "--study", "s", "--out", "out.csv"], ["serve"], ["list"], ["close", "s"]]
)
def test_commands_on_a_database_that_does_not_exist_are_one_line_and_create_nothing(
    tmp_path, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    monkeypatch.delenv("HVQEVAL_STUDY_DATABASE_URL", raising=False)
    for extra in ([], ["--database-url", f"sqlite:///{tmp_path / 'missing.sqlite3'}"]):
        result = CliRunner().invoke(cli, ["study", *command, *extra])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert (
            result.output.startswith("Error: no study database at ")
            and "serving" not in result.output
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no instance/study.sqlite3, no CSV


def test_serve_on_a_busy_port_is_one_line_before_anything_is_served(db_url, monkeypatch):
    import socket

    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["study", "serve", "--database-url", db_url, "--bind", f"127.0.0.1:{port}"]
        )
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert (
        result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
        and "is another server running there?" in result.output
        and "serving" not in result.output
    )


@pytest.mark.parametrize(
    "bind, message",
    [
        ("127.0.0.1:99999", "a port of 1-65535"),  # was a traceback (OverflowError)
        ("127.0.0.1:0", "a port of 1-65535"),
        ("127.0.0.1:http", "a port of 1-65535"),
        ("999.1.1.1:8310", "give an address of this machine"),  # not "another server"
        ("192.0.2.1:8310", "give an address of this machine"),  # no interface of this machine
    ],
)
def test_a_bad_bind_address_is_one_line_that_says_what_to_change(
    db_url, monkeypatch, bind, message
):
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url, "--bind", bind])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert "another server" not in result.output


def test_an_access_log_that_cannot_be_written_is_one_line_before_anything_is_served(
    db_url, tmp_path, monkeypatch
):
    """Was gunicorn's "Error: Error: '...' isn't writable" after every image was rendered."""
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    log = tmp_path / "no-such-folder" / "access.log"
    result = CliRunner().invoke(
        cli, ["study", "serve", "--database-url", db_url, "--access-log", str(log)]
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: --access-log {log}: No such file or directory")
    assert "Error: Error" not in result.output and not log.parent.exists()


@pytest.mark.parametrize(
    "content, message", [(None, "No such file"), ("", "is empty"), ("short", "too short")]
)
def test_secret_key_file_errors_are_one_line(db_url, tmp_path, monkeypatch, content, message):
    monkeypatch.delenv("HVQEVAL_SECRET_KEY", raising=False)
    key_file = tmp_path / "secret.key"
    if content is not None:
        key_file.write_text(content)
    for how in (["--secret-key-file", str(key_file)], []):
        if not how:
            monkeypatch.setenv("HVQEVAL_SECRET_KEY_FILE", str(key_file))
        result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url, *how])
        assert (
            result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output
        ), result.output


@pytest.mark.slow
def test_serve_with_a_secret_key_file_serves_the_study(db_url, sets, tmp_path):
    """The printed command carries its key as a file: the server starts and /healthz says ok."""
    import os
    import time
    import urllib.request

    from study_server import free_port

    _invoke(
        "create",
        "rating",
        "--name",
        "keyed",
        "--model",
        f"ff={sets['ff'].path}",
        "--classes",
        "1",
        "--per-class",
        "2",
        "--database-url",
        db_url,
    )
    key_file = tmp_path / "secret.key"
    key_file.write_text("f" * 64 + "\n")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HVQEVAL_SECRET_KEY", "HVQEVAL_SECRET_KEY_FILE")
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hvqeval",
            "study",
            "serve",
            "--database-url",
            db_url,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--secret-key-file",
            str(key_file),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status is None and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    status = json.load(reply)["status"]
            except OSError:
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert status == "ok", output
    # before it serves: only the image prerender's progress lines (no warning, no traceback)
    before, serving, _ = output.partition(f"serving on http://127.0.0.1:{port}")
    assert serving and all(
        line.startswith(("upscales of ", "rendering images: ")) for line in before.splitlines()
    ), output
    # then each study's raters' link on this server, as printed ready to open
    with session_scope(engine_for(db_url)) as s:
        public_id = s.scalar(select(Study.public_id))
    link = f"http://127.0.0.1:{port}/s/{public_id}/?PROLIFIC_PID=<participant id>"
    assert serving and link in output.partition(serving)[2], output
    # stopped by SIGTERM (a service manager's stop): one line says so, and nothing else follows
    assert output.rstrip().splitlines()[-1] == f"stopped serving on http://127.0.0.1:{port}"
    assert server.returncode == 0, output


def test_study_without_example_images_is_refused_unless_said(db_url, sets):
    args = [
        "create",
        "rating",
        "--name",
        "bare",
        "--model",
        f"ff={sets['ff'].path}",
        "--classes",
        "1",
        "--per-class",
        "6",
        "--database-url",
        db_url,
    ]  # the sets hold 6 images per class: none left over
    refused = CliRunner().invoke(cli, ["study", *args])
    assert (
        refused.exit_code == 1
        and refused.output.startswith("Error: ")
        and "--no-examples" in refused.output
    )
    assert "ff" in refused.output and len(refused.output.strip().splitlines()) == 1
    assert json.loads(_invoke("list", "--json", "--database-url", db_url).output) == []
    assert _invoke(*args, "--no-examples").exit_code == 0


def test_a_create_that_fails_keeps_the_real_images_of_the_study_of_that_name(
    db_url, sets, tmp_path
):
    """A study's real images are its own copy in the instance folder; a second create of the
    same name (refused: the name is taken) or one that fails for another reason must leave
    them as they were, and a failed create of a new name leaves no images behind."""
    instance = tmp_path / "inst"

    def create(name, *extra):
        return _create_with_real_images(name, sets, db_url, instance, *extra)

    def files(name):
        folder = instance / "studies" / name
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    assert create("kept").exit_code == 0
    kept = files("kept")
    assert kept
    taken = create("kept", "--seed", "7", "--per-class", "4")
    assert taken.exit_code != 0 and "already holds the images of a study named" in taken.output
    assert files("kept") == kept
    failed = create("new", "--per-class", "400")  # more images than the sample set has
    assert failed.exit_code != 0
    assert not (instance / "studies" / "new").exists()
    assert files("kept") == kept
    # a name that is a path never reaches the file system
    escaped = create("../cache")
    assert escaped.exit_code != 0 and "use 1-100 letters" in escaped.output
    assert not (instance / "cache").exists()
