"""Crowd platforms: Prolific ids stored and the completion redirect only after the last answer;
MTurk preview claims nothing, the submit form posts the assignment to turkSubmitTo; codes in the
export, the admin page and ``hvqeval study codes --check``."""

from __future__ import annotations

import csv
import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from study_schemas import RaterClient, engine_for, logged_in_admin

from hvqeval.cli import cli
from study_app import create_app
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import session_scope
from study_app.schema import Assignment, Rater, Study

SECRET = "test-secret-key-0123456789abcdef"
PROLIFIC_URL = "https://app.prolific.com/submissions/complete?cc=C0DE42"
SANDBOX = "https://workersandbox.mturk.com"


def _make(db_url, sets, tmp_path, **extra):
    create_study(
        db_url,
        StudySettings(
            name="crowd",
            kind="pairwise",
            sources=(
                SourceSpec("ff", str(sets["ff"].path)),
                SourceSpec("msp", str(sets["msp"].path)),
            ),
            classes=(3,),
            per_class=2,
            pairs_per_class=4,
            answers_per_item=2,
            tasks_per_rater=2,
            **extra,
        ),
        tmp_path,
    )
    with session_scope(engine_for(db_url)) as s:
        study = s.scalar(select(Study))
        s.expunge(study)
    return study


def _app(db_url, tmp_path, **config):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "cache"),
            "RATE_LIMIT_RATER": "100000/60",
            "RATE_LIMIT_IP": "100000/60",
            **config,
        }
    )


def _consent(rater: RaterClient, query: str):
    r = rater.get(f"/s/{rater.public_id}/?{query}", follow_redirects=True)
    assert r.status_code == 200, r.data
    r = rater.client.post(
        f"/s/{rater.public_id}/consent",
        data={"agree": "yes", "csrf_token": rater.csrf},
        follow_redirects=True,
    )
    rater._remember(r)
    assert r.status_code == 200


def test_prolific_ids_stored_and_redirect_only_after_the_last_answer(db_url, sets, tmp_path):
    study = _make(db_url, sets, tmp_path, completion_code="C0DE42", completion_url=PROLIFIC_URL)
    rater = RaterClient(_app(db_url, tmp_path).test_client(), study.public_id)
    _consent(rater, "PROLIFIC_PID=pp1&STUDY_ID=st9&SESSION_ID=se7")
    with session_scope(engine_for(db_url)) as s:
        row = s.execute(select(Rater.platform, Rater.platform_study, Rater.platform_session)).one()
    assert tuple(row) == ("prolific", "st9", "se7")
    task = rater.next()
    early = rater.get(f"/s/{study.public_id}/complete")
    assert early.status_code == 403  # no redirect, no code before the last answer
    first = rater.answer(task["task"], "left").get_json()
    assert first["next"]["state"] == "task" and "code" not in first["next"]
    last = rater.answer(first["next"]["task"], "right").get_json()
    assert last["stored"] and last["next"] == {
        "state": "finished",
        "code": "C0DE42",
        "done": 2,
        "total": 2,
        "complete": f"/s/{study.public_id}/complete",
    }
    done = rater.get(f"/s/{study.public_id}/complete")
    assert done.status_code == 302 and done.headers["Location"] == PROLIFIC_URL


def test_a_finished_rater_who_opens_the_link_again_gets_the_completion_step(db_url, sets, tmp_path):
    """Raters come back to look their code up (a lost tab, another browser): the link takes a
    finished rater to the completion step (Prolific's redirect, the code), not to the consent
    form, also once the study is closed; a rater who has not finished still gets the form."""
    study = _make(db_url, sets, tmp_path, completion_code="C0DE42", completion_url=PROLIFIC_URL)
    app = _app(db_url, tmp_path)
    link = f"/s/{study.public_id}/?PROLIFIC_PID=back1&STUDY_ID=st9&SESSION_ID=se7"
    rater = RaterClient(app.test_client(), study.public_id)
    _consent(rater, link.split("?", 1)[1])
    task = rater.next()
    following = rater.answer(task["task"], "left").get_json()["next"]
    assert rater.answer(following["task"], "left").get_json()["next"]["state"] == "finished"
    halfway = RaterClient(app.test_client(), study.public_id)
    _consent(halfway, "PROLIFIC_PID=half1")
    halfway.next()

    for status in ("open", "closed"):
        with session_scope(engine_for(db_url)) as s:
            s.get(Study, study.id).status = status
        again = app.test_client()  # another browser: no session
        entry = again.get(link)
        assert entry.status_code == 302, entry.data
        assert entry.headers["Location"] == f"/s/{study.public_id}/complete"
        done = again.get(entry.headers["Location"])
        assert done.status_code == 302 and done.headers["Location"] == PROLIFIC_URL
    with session_scope(engine_for(db_url)) as s:
        s.get(Study, study.id).status = "open"
    not_done = app.test_client().get(f"/s/{study.public_id}/?PROLIFIC_PID=half1")
    assert not_done.status_code == 200 and b'name="agree"' in not_done.data
    with session_scope(engine_for(db_url)) as s:  # nothing claimed or created by coming back
        assert s.scalar(select(func.count()).select_from(Rater)) == 2
        assert s.scalar(select(func.count()).select_from(Assignment)) == 3


def test_mturk_preview_claims_nothing_and_submit_posts_the_assignment(db_url, sets, tmp_path):
    study = _make(db_url, sets, tmp_path)
    app = _app(db_url, tmp_path)
    preview = app.test_client().get(
        f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1"
    )
    assert (
        preview.status_code == 200
        and b"This is a preview" in preview.data
        and b"Instructions" in preview.data
    )
    assert b'name="agree"' not in preview.data and re.search(rb"<img [^>]*example", preview.data)
    # the worker deciding whether to accept sees the example images (no session yet)
    examples = re.findall(rb'<img src="([^"]+)" alt="example', preview.data)
    assert len(examples) >= 2
    for url in examples:
        image = app.test_client().get(url.decode())
        assert image.status_code == 200 and image.mimetype == "image/png"
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Rater)) == 0
        assert s.scalar(select(func.count()).select_from(Assignment)) == 0

    rater = RaterClient(app.test_client(), study.public_id)
    _consent(rater, f"workerId=W1&assignmentId=A77&hitId=H1&turkSubmitTo={SANDBOX}")
    task = rater.next()
    following = rater.answer(task["task"], "left").get_json()["next"]
    finished = rater.answer(following["task"], "left").get_json()["next"]
    assert finished["state"] == "finished" and finished["complete"].endswith("/complete")
    page = rater.get(f"/s/{study.public_id}/complete")
    assert page.status_code == 200
    form = page.data.decode()
    assert (
        f'action="{SANDBOX}/mturk/externalSubmit"' in form
        and 'name="assignmentId" value="A77"' in form
    )
    assert f'value="{finished["code"]}"' in form
    assert f"form-action 'self' {SANDBOX}" in page.headers["Content-Security-Policy"]
    with session_scope(engine_for(db_url)) as s:
        row = s.execute(
            select(
                Rater.participant,
                Rater.platform,
                Rater.platform_study,
                Rater.platform_session,
                Rater.submit_to,
            )
        ).one()
    assert tuple(row) == ("W1", "mturk", "H1", "A77", SANDBOX)


def test_turk_submit_to_elsewhere_is_refused(db_url, sets, tmp_path):
    study = _make(db_url, sets, tmp_path)
    r = (
        _app(db_url, tmp_path)
        .test_client()
        .get(f"/s/{study.public_id}/?workerId=W1&assignmentId=A1&turkSubmitTo=https://evil.example")
    )
    assert r.status_code == 400
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Rater)) == 0


@pytest.mark.parametrize(
    "query",
    [
        "PROLIFIC_PID=p1&STUDY_ID=a%00b",  # PostgreSQL refuses NUL in text: was a 500 there
        "PROLIFIC_PID=p1&SESSION_ID=x%0D%0Ay",
        "PROLIFIC_PID=p1&STUDY_ID=%3DHYPERLINK(%22http://x%22)",  # a spreadsheet formula
        "workerId=W1&assignmentId=A%001&hitId=H1",
        "workerId=W1&assignmentId=A1&hitId=H%1B1",
        "workerId=W1&assignmentId=A1&turkSubmitTo=https://%5B::1",  # urlsplit raises
    ],
)
def test_a_malformed_platform_id_is_a_400_and_stores_nothing(db_url, sets, tmp_path, query):
    study = _make(db_url, sets, tmp_path)
    r = _app(db_url, tmp_path).test_client().get(f"/s/{study.public_id}/?{query}")
    assert r.status_code == 400, r.data
    assert b"Something went wrong" not in r.data
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Rater)) == 0


def test_codes_in_export_admin_and_check(db_url, sets, tmp_path):
    from werkzeug.security import generate_password_hash

    study = _make(db_url, sets, tmp_path)
    app = _app(db_url, tmp_path, ADMIN_PASSWORD_HASH=generate_password_hash("pw"))
    codes = {}
    for who in ("P1", "P2"):
        rater = RaterClient(app.test_client(), study.public_id)
        _consent(rater, f"PROLIFIC_PID={who}&STUDY_ID=S&SESSION_ID=sess-{who}")
        for _ in range(2):
            reply = rater.answer(rater.next()["task"], "left").get_json()
        codes[who] = reply["next"]["code"]
    assert codes["P1"] != codes["P2"]  # no study code: one random code per rater

    out = tmp_path / "responses.csv"
    runner = CliRunner()
    assert (
        runner.invoke(
            cli,
            ["study", "export", "--study", "crowd", "--out", str(out), "--database-url", db_url],
        ).exit_code
        == 0
    )
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {
        (r["rater"], r["completion_code"], r["platform"], r["platform_session"]) for r in rows
    } == {("P1", codes["P1"], "prolific", "sess-P1"), ("P2", codes["P2"], "prolific", "sess-P2")}

    page = logged_in_admin(app, "pw").get("/admin/study/crowd").data.decode()
    assert codes["P1"] in page and codes["P2"] in page and "sess-P1" in page

    listed = runner.invoke(cli, ["study", "codes", "crowd", "--database-url", db_url])
    header, *lines = listed.output.splitlines()
    assert header.split("\t") == ["participant", "platform", "answered", "completion_code"]
    assert sorted(lines) == [f"P1\tprolific\t2\t{codes['P1']}", f"P2\tprolific\t2\t{codes['P2']}"]

    pasted = tmp_path / "prolific.csv"
    pasted.write_text(f"Participant id,Completion code\nP1,{codes['P1'].lower()}\nP3,XYZ\n")
    result = runner.invoke(
        cli, ["study", "codes", "crowd", "--check", str(pasted), "--json", "--database-url", db_url]
    )
    assert result.exit_code == 1
    found = json.loads(result.output)
    assert found["checked"] == 2
    assert {(m["participant"], m["problem"]) for m in found["mismatches"]} == {
        ("P3", "never entered this study"),
        ("P2", "finished but no submission"),
    }
    pasted.write_text(f"Participant id,Completion code\nP1,{codes['P1']}\nP2,{codes['P2']}\n")
    ok = runner.invoke(
        cli, ["study", "codes", "crowd", "--check", str(pasted), "--database-url", db_url]
    )
    assert ok.exit_code == 0 and "0 mismatch(es)" in ok.output
    pasted.write_text(f"Participant id,Completion code\nP1,{codes['P1']}\nP2,WRONG\n")
    bad = runner.invoke(
        cli, ["study", "codes", "crowd", "--check", str(pasted), "--database-url", db_url]
    )
    assert bad.exit_code == 1 and "P2\tpasted WRONG" in bad.output and "wrong code" in bad.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--completion-code", "has space"], "--completion-code"),
        (["--completion-url", "app.prolific.com/x"], "--completion-url"),
    ],
)
def test_bad_completion_settings_are_one_line(db_url, sets, args, message):
    result = CliRunner().invoke(
        cli,
        [
            "study",
            "create",
            "rating",
            "--name",
            "x",
            "--model",
            f"ff={sets['ff'].path}",
            "--classes",
            "1",
            "--per-class",
            "2",
            "--database-url",
            db_url,
            *args,
        ],
    )
    assert (
        result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output
    )


def test_check_file_without_the_columns_is_one_line(db_url, sets, tmp_path):
    _make(db_url, sets, tmp_path)
    (tmp_path / "x.csv").write_text("id,value\n1,2\n")
    result = CliRunner().invoke(
        cli,
        ["study", "codes", "crowd", "--check", str(tmp_path / "x.csv"), "--database-url", db_url],
    )
    assert (
        result.exit_code == 1
        and result.output.startswith("Error: ")
        and "no participant column" in result.output
    )
