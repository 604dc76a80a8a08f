"""``hvqeval study`` commands end to end, the migration matching the models, and the
Flask-free export used by the analysis helper."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli
from study_app import assign
from study_app.db import session_scope
from study_schemas import engine_for
from study_app.export import EXPORT_COLUMNS, export_rows
from study_app.schema import Base, Source, Study


def _invoke(*args):
    return CliRunner().invoke(cli, ["study", *args], catch_exceptions=False)


def test_create_rating_with_real_images_then_answer_and_export(db_url, sets, tmp_path):
    result = _invoke("create", "rating", "--name", "table2", "--model", f"ff={sets['ff'].path}",
                     "--model", f"msp={sets['msp'].path}", "--real", "real=shapes", "--classes", "2",
                     "--per-class", "3", "--ratings-per-item", "2", "--database-url", db_url,
                     "--instance-dir", str(tmp_path / "inst"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["items"] == 3 * 2 * 3 and summary["answers_needed"] == 36  # 3 sources x 2 classes x 3 images
    engine = engine_for(db_url)
    with session_scope(engine) as s:
        study = s.query(Study).filter_by(name="table2").one()
        s.expunge(study)
        real = s.query(Source).filter_by(label="real").one()
    assert real.is_real and (tmp_path / "inst" / "studies" / "table2" / "real-real" / "manifest.json").is_file()
    rater = assign.enter(engine, study.id, "P1")
    for value in (5, "unknown"):
        task = assign.next_task(engine, study, rater)
        assign.submit(engine, study, rater, task.token, value, "image-failed" if value == "unknown" else None, 700)
    out = tmp_path / "responses.csv"
    result = _invoke("export", "--study", "table2", "--out", str(out), "--database-url", db_url)
    assert result.exit_code == 0, result.output
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == EXPORT_COLUMNS
        rows = list(reader)
    assert [(r["rating"], r["choice"], r["unknown_reason"]) for r in rows] == [("5", "", ""),
                                                                              ("", "unknown", "image-failed")]
    assert all(r["kind"] == "rating" and r["rater"] == "P1" and r["model_b"] == "" and r["left"] == "a"
               and r["response_ms"] == "700" for r in rows)
    assert all(r["model_a"] in ("ff", "msp", "real") and "/" in r["sample_a"] for r in rows)


def test_create_pairwise_list_close_open(db_url, sets, tmp_path):
    result = _invoke("create", "pairwise", "--name", "table5", "--a", f"ff={sets['ff'].path}",
                     "--b", f"msp={sets['msp'].path}", "--classes", "3,5", "--per-class", "4",
                     "--pairs-per-class", "8", "--raters-per-pair", "3", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "16 items, 48 answers needed" in result.output  # 2 classes x 8 pairs, k = 3
    listed = json.loads(_invoke("list", "--json", "--database-url", db_url).output)
    assert [(s["name"], s["kind"], s["status"], s["needed"]) for s in listed] == [("table5", "pairwise", "open", 48)]
    assert _invoke("close", "table5", "--database-url", db_url).exit_code == 0
    assert json.loads(_invoke("list", "--json", "--database-url", db_url).output)[0]["status"] == "closed"
    assert _invoke("open", "table5", "--database-url", db_url).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["create", "pairwise", "--name", "x", "--a", "ff={ff}", "--b", "msp={msp}", "--classes", "1",
      "--per-class", "4", "--pairs-per-class", "10"], "infeasible pairing"),
    (["create", "rating", "--name", "x", "--model", "ff={ff}", "--classes", "1", "--per-class", "7"],
     "only 0 class(es) have 7 images"),
    (["create", "rating", "--name", "x", "--model", "ff=/nonexistent", "--classes", "1"], "does not exist"),
    (["create", "rating", "--name", "x", "--model", "ff", "--classes", "1"], "expected LABEL=SAMPLE_SET"),
    (["create", "rating", "--name", "bad name!", "--model", "ff={ff}", "--classes", "1"], "study name"),
    (["export", "--study", "nope", "--out", "{tmp}/x.csv"], "no study named 'nope'"),
    (["close", "nope"], "no study named 'nope'"),
])
def test_user_mistakes_are_one_line_errors(db_url, sets, tmp_path, args, message):
    args = [a.format(ff=sets["ff"].path, msp=sets["msp"].path, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["study", *args, "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output and "Traceback" not in result.output


def test_duplicate_study_name_is_refused(db_url, sets):
    args = ["create", "rating", "--name", "once", "--model", f"ff={sets['ff'].path}", "--classes", "1",
            "--per-class", "2", "--database-url", db_url]
    assert _invoke(*args).exit_code == 0
    again = CliRunner().invoke(cli, ["study", *args])
    assert again.exit_code == 1 and "already exists" in again.output


def test_serve_refuses_to_start_without_a_secret_key(db_url, monkeypatch):
    monkeypatch.delenv("HVQEVAL_SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url])
    assert result.exit_code == 1 and "HVQEVAL_SECRET_KEY" in result.output


def test_serve_concurrency_defaults_depend_on_the_database_and_keep_what_was_asked(monkeypatch):
    from study_app.server import resolve_concurrency

    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert resolve_concurrency("sqlite:///x.sqlite3", None, None) == (7, 1)
    assert resolve_concurrency("postgresql+psycopg://u@h/db", None, None) == (6, 2)
    assert resolve_concurrency("postgresql+psycopg://u@h/db", 1, None) == (1, 2)
    assert resolve_concurrency("sqlite:///x.sqlite3", None, 4) == (7, 4)


def test_migrations_create_exactly_the_models_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_export_needs_no_flask(sets, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'noflask.sqlite3'}"
    _invoke("create", "rating", "--name", "noflask", "--model", f"ff={sets['ff'].path}", "--classes", "1",
            "--per-class", "2", "--database-url", db_url)
    code = ("import sys; from study_app.export import export_rows; "
            f"rows = export_rows({db_url!r}, 'noflask'); "
            "assert rows == [] and 'flask' not in sys.modules, sorted(m for m in sys.modules if 'flask' in m); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert export_rows(db_url, "noflask") == []


def test_hash_password_prints_only_a_hash_that_checks():
    from werkzeug.security import check_password_hash

    result = CliRunner().invoke(cli, ["study", "hash-password"], input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert check_password_hash(result.stdout.strip(), "s3cret-pass")
    assert not check_password_hash(result.stdout.strip(), "other")


def test_database_urls_are_normalised_or_refused():
    from study_app.db import normalise_url
    from study_app.errors import DatabaseError

    assert normalise_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalise_url("postgres://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert normalise_url("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"
    for bad in ("mysql://u@h/db", "not a url"):
        with pytest.raises(DatabaseError):
            normalise_url(bad)


def test_unreachable_database_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["study", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot reach the study database")
    assert "Traceback" not in result.output
