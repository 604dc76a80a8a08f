"""What a hostile (or unlucky) rater and operator find: each case was a defect of an earlier
version (a 500, a stored answer without consent, a study served with broken images, ...)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from study_schemas import RaterClient, engine_for, small_rating_study

from hvqeval.cli import cli
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import session_scope
from study_app.errors import StudySourceError
from study_app.progress import set_status
from study_app.schema import Answer, Assignment, Rater, Study


@pytest.fixture
def study(db_url, sets, tmp_path):
    return small_rating_study(db_url, sets, tmp_path, "hostile", models=("ff",))


def _count(db_url, model, *where):
    with session_scope(engine_for(db_url)) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _entered_without_consent(app, public_id):
    """A client that opened the link and read the CSRF token from GET /consent, never posting it."""
    client = app.test_client()
    page = client.get(f"/s/{public_id}/?PROLIFIC_PID=sneaky", follow_redirects=True)
    assert page.status_code == 200 and b"Consent" in page.data
    return client, re.search(rb'name="csrf-token" content="([^"]+)"', page.data).group(1).decode()


def test_the_api_refuses_a_rater_who_never_gave_consent(app, study, db_url, new_rater):
    client, csrf = _entered_without_consent(app, study.public_id)
    refused = client.post(f"/s/{study.public_id}/api/next", json={}, headers={"X-CSRFToken": csrf})
    assert refused.status_code == 403 and "consent" in refused.get_json()["error"]
    # Even with a real task token (of a rater who did consent), nothing is stored for them.
    honest = new_rater(study.public_id, "honest")
    token = honest.next()["task"]
    answer = client.post(
        f"/s/{study.public_id}/api/answer",
        headers={"X-CSRFToken": csrf},
        json={"task": token, "answer": 3, "response_ms": 500},
    )
    assert answer.status_code == 403
    assert _count(db_url, Answer) == 0
    assert (
        _count(
            db_url,
            Assignment,
            Assignment.rater_id
            != select(Rater.id).where(Rater.participant == "honest").scalar_subquery(),
        )
        == 0
    )


@pytest.mark.parametrize(
    "body",
    [b"[" * 30_000, b'{"a":' * 1_600 + b"1" + b"}" * 1_600],
    ids=["30000-brackets", "nested-objects"],
)
def test_deeply_nested_json_is_a_400_not_a_500(study, new_rater, db_url, body):
    assert len(body) < 64 * 1024  # under the body-size limit: the parser itself must cope
    rater = new_rater(study.public_id, "nester")
    reply = rater.client.post(
        f"/s/{study.public_id}/api/answer",
        data=body,
        content_type="application/json",
        headers={"X-CSRFToken": rater.csrf},
    )
    assert reply.status_code == 400 and reply.get_json() == {"error": "expected a JSON object"}
    assert _count(db_url, Answer) == 0


def test_a_closed_study_admits_no_new_raters_and_stores_no_rows(app, study, db_url, new_rater):
    holder = new_rater(study.public_id, "holder")  # saw the task page while the study was open
    held = holder.next()
    returning = RaterClient(app.test_client(), study.public_id)
    entry = f"/s/{study.public_id}/?PROLIFIC_PID=early"
    assert returning.get(entry).status_code == 200  # entered (instructions) while it was open
    set_status(engine_for(db_url), "hostile", "closed")
    late = app.test_client().get(f"/s/{study.public_id}/?PROLIFIC_PID=latecomer")
    assert late.status_code == 403 and b"closed" in late.data
    preview = f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1"
    shown = app.test_client().get(preview)  # a worker deciding whether to accept the HIT
    assert (
        shown.status_code == 403 and b"closed" in shown.data and b"Instructions" not in shown.data
    )
    posted = app.test_client().post(f"/s/{study.public_id}/", data={"participant": "latecomer2"})
    assert posted.status_code in (400, 403)  # no CSRF token, or closed: never a new rater
    assert _count(db_url, Rater, Rater.participant.in_(["latecomer", "latecomer2"])) == 0
    again = returning.get(entry, follow_redirects=True)
    assert again.status_code == 200  # a rater who is in may come back: the closed page
    task_page = returning.client.post(
        f"/s/{study.public_id}/consent",
        data={"agree": "yes", "csrf_token": returning.csrf},
        follow_redirects=True,
    )
    assert b'id="first-task">{"state": "closed"}' in task_page.data
    assert returning.next()["state"] == "closed"
    # the task shown before the study closed may still be answered; nothing new is handed out
    assert holder.next()["task"] == held["task"]
    reply = holder.answer(held["task"], 3)
    assert reply.status_code == 200 and reply.get_json()["next"]["state"] == "finished"
    assert _count(db_url, Assignment) == 1


def test_create_refuses_png_files_that_are_not_images(db_url, sample_set_factory, tmp_path):
    import hashlib
    import json

    broken = sample_set_factory("broken", "tiny", 3)
    manifest_path = broken.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    victim = manifest["files"][4]
    (broken.path / victim["file"]).write_bytes(b"this is not a PNG at all")
    victim["sha256"] = hashlib.sha256(b"this is not a PNG at all").hexdigest()  # the hash is right
    manifest_path.write_text(json.dumps(manifest))
    settings = StudySettings(
        name="broken",
        kind="rating",
        sources=(SourceSpec("tiny", str(broken.path)),),
        classes=(3, 5, 7),
        per_class=3,
    )
    with pytest.raises(StudySourceError, match=re.escape(victim["file"])):
        create_study(db_url, settings, tmp_path)
    assert _count(db_url, Study) == 0
    result = CliRunner().invoke(
        cli,
        [
            "study",
            "create",
            "rating",
            "--name",
            "broken",
            "--model",
            f"tiny={broken.path}",
            "--classes",
            "3,5,7",
            "--per-class",
            "3",
            "--database-url",
            db_url,
        ],
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: ") and victim["file"] in result.output


def test_a_bad_rate_limit_is_one_line_before_anything_is_served(db_url, monkeypatch):
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("HVQEVAL_RATE_LIMIT_RATER", "lots")
    result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "HVQEVAL_RATE_LIMIT_RATER='lots'" in result.output and "serving" not in result.output


def test_an_unreachable_postgresql_is_one_line(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    for args in (
        ["study", "export", "--study", "x", "--out", str(tmp_path / "x.csv")],
        ["study", "list"],
        ["study", "migrate"],
    ):
        result = CliRunner().invoke(cli, [*args, "--database-url", url])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert (
            result.output.startswith("Error: cannot reach the study database")
            and "Traceback" not in result.output
        )
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_raters_see_no_error_after_postgresql_terminates_the_app_connections(
    database_url, db_url, study, tmp_path
):
    """pg_terminate_backend on every connection of the app (a PostgreSQL restart or failover
    does the same): pooled connections are pinged before use and a transaction (or lookup) whose
    connection broke under it runs once more, so no rater request fails: a page, an image or the
    API."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from study_app import create_app
    from study_app.db import make_engine

    name = f"hvqeval-terminate-{tmp_path.name[-20:]}"
    app_url = (
        make_url(db_url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t" * 32,
            "DATABASE_URL": app_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "c"),
        }
    )
    admin = make_engine(database_url)

    def terminate() -> int:
        with admin.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": name},
                ).all()
            )

    raters = []
    for i in range(4):
        rater = RaterClient(app.test_client(), study.public_id)
        rater.enter(f"t{i}")
        raters.append(rater)
    codes, images = [], []
    try:
        for round_ in range(3):
            # the first request after a termination: a page, an image, then the API
            first = raters[0]
            if round_ == 1:
                codes.append(first.get(f"/s/{study.public_id}/task").status_code)
            if round_ == 2:
                codes.append(first.client.get(images[-1]).status_code)
            for rater in raters:
                task = rater.api("next")
                codes.append(task.status_code)
                if task.status_code == 200 and task.get_json()["state"] == "task":
                    if rater is first:
                        images.extend(task.get_json()["images"])
                    codes.append(rater.answer(task.get_json()["task"], 1 + round_).status_code)
            assert terminate() >= 1  # the app's pooled connections were there, and are gone
    finally:
        admin.dispose()
        app.extensions["study_engine"].dispose()
    assert codes and set(codes) == {200}
    assert _count(db_url, Answer) == 8  # 2 classes x 2 images, k = 2: every slot filled, none twice
