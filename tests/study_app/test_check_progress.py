"""Attention checks as the rater's browser sees them (JSON API through the Flask test client):
progress counts every counted and catch answer alike in every reply, the completion says N / N,
a rater arriving at a full study gets no practice and no completion code, "an image did not
load" on a catch item is neither pass nor fail, and check images never show up in counted tasks."""

from __future__ import annotations

from sqlalchemy import select
from test_attention_checks import TASKS, corrupted_tokens, make_study, run_rater

from study_app import checks
from study_app.db import session_scope
from study_app.schema import Answer, Image, Item, Rater


def _answer_everything(rater, bad: set[str], unknown_on_catch: str | None = None):
    """Answer until the study says finished; returns the replies (answer replies' 'done' and
    the following task or completion)."""
    replies = []
    current = rater.next()
    while current["state"] == "task":
        tokens = [
            url.rsplit("/", 1)[1].split(".")[0] for url in current["images"]
        ]  # token.signature.png
        is_check = any(t in bad for t in tokens)
        if is_check and not current["practice"] and unknown_on_catch:
            r = rater.answer(current["task"], "unknown", reason=unknown_on_catch)
        else:
            r = rater.answer(current["task"], "right" if tokens[0] in bad else "left")
        assert r.status_code == 200, r.data
        body = r.get_json()
        replies.append((current, body))
        current = body["next"]
    return replies, current


def test_progress_counts_catch_answers_in_every_reply_and_finishes_n_of_n(
    app, db_url, sets, tmp_path, new_rater
):
    engine, study = make_study(db_url, sets, tmp_path, practice=1)
    total = TASKS + study.catch_items
    bad = corrupted_tokens(engine, study)
    replies, finished = _answer_everything(new_rater(study.public_id, "w1"), bad)
    counted = [(shown, body) for shown, body in replies if not shown["practice"]]
    assert len(counted) == total and len(replies) == total + 1
    for n, (shown, body) in enumerate(counted):
        assert (shown["done"], shown["total"]) == (n, total)
        assert body["done"] == n + 1  # a catch answer moves the count like any other
    assert finished["state"] == "finished" and finished["code"]
    assert (finished["done"], finished["total"]) == (total, total)


def test_a_rater_arriving_at_a_full_study_gets_no_practice_and_no_code(
    app, db_url, sets, tmp_path, new_rater
):
    engine, study = make_study(db_url, sets, tmp_path, practice=2)
    bad = corrupted_tokens(engine, study)
    n = 0
    while True:  # fill every counted slot
        _rater, roles = run_rater(engine, study, f"f{n}", False, bad)
        n += 1
        if roles.count("task") < TASKS:
            break
    late = new_rater(study.public_id, "late")
    first = late.next()
    assert first == {"state": "unavailable", "done": 0}  # no practice item first
    with session_scope(engine) as s:
        rater = s.execute(select(Rater).where(Rater.participant == "late")).scalar_one()
        assert rater.completion_code is None and rater.finished_at is None
        assert s.scalar(select(Answer.id).where(Answer.rater_id == rater.id)) is None


def test_image_failed_on_a_catch_item_is_neither_pass_nor_fail(
    app, db_url, sets, tmp_path, new_rater
):
    engine, study = make_study(db_url, sets, tmp_path, practice=0)
    bad = corrupted_tokens(engine, study)
    _answer_everything(new_rater(study.public_id, "w2"), bad, unknown_on_catch="image-failed")
    _answer_everything(new_rater(study.public_id, "w3"), bad, unknown_on_catch="cannot-decide")
    rates = checks.participant_pass_rates(engine, "checked")
    assert "w2" not in rates  # no catch answer with a result
    assert rates["w3"] == (0, study.catch_items)  # "cannot decide" on an obvious item fails
    with session_scope(engine) as s:
        results = s.scalars(
            select(Answer.passed)
            .join(Rater, Rater.id == Answer.rater_id)
            .join(Item, Item.id == Answer.item_id)
            .where(Rater.participant == "w2", Item.role == "catch")
        ).all()
    assert results == [None] * study.catch_items


def test_check_images_are_never_shown_in_counted_tasks(db_url, sets, tmp_path):
    for kind in ("pairwise", "rating"):
        engine, study = make_study(db_url, sets, tmp_path / kind, kind=kind, name=kind, practice=2)
        with session_scope(engine) as s:
            items = s.execute(
                select(Item.role, Item.image_a_id, Item.image_b_id).where(Item.study_id == study.id)
            ).all()
            files = {
                i: (src, f)
                for i, src, f in s.execute(select(Image.id, Image.source_id, Image.file))
            }
        task_images = {i for r, a, b in items if r == "task" for i in (a, b) if i is not None}
        check_images = {i for r, a, b in items if r != "task" for i in (a, b) if i is not None}
        assert check_images and not check_images & task_images
        task_files = {files[i] for i in task_images}
        assert not {files[i] for i in check_images} & task_files  # not even another row of a file


def test_no_image_outside_the_counted_tasks_is_one_line_and_creates_nothing(db_url, sets, tmp_path):
    import pytest
    from sqlalchemy import func
    from study_schemas import engine_for

    from study_app.errors import StudyError
    from study_app.schema import Study

    with pytest.raises(StudyError) as err:  # 6 images per class, all 6 in counted tasks
        make_study(db_url, sets, tmp_path, kind="rating", per_class=6, no_examples=True)
    message = str(err.value)
    assert "no image to corrupt" in message and "ff" in message and "\n" not in message
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
    assert not (tmp_path / "inst" / "studies" / "checked").exists()


def test_instructions_mention_checks_only_when_the_study_has_them(app, db_url, sets, tmp_path):
    import re

    for name, fraction in (("with", 0.25), ("without", 0.0)):
        _engine, study = make_study(
            db_url, sets, tmp_path / name, name=name, catch_fraction=fraction
        )
        page = app.test_client().get(
            f"/s/{study.public_id}/?PROLIFIC_PID=i-{name}", follow_redirects=True
        )
        text = re.sub(r"\s+", " ", page.data.decode())
        assert ("A few tasks have an obvious answer" in text) == (fraction > 0)
        assert ("There are no right or wrong answers" in text) == (fraction == 0)


def test_real_given_a_sample_set_says_what_to_use(db_url, sets, tmp_path):
    from click.testing import CliRunner

    from hvqeval.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "study",
            "create",
            "rating",
            "--name",
            "r",
            "--model",
            f"ff={sets['ff'].path}",
            "--real",
            f"real={sets['msp'].path}",
            "--classes",
            "3,5",
            "--per-class",
            "2",
            "--database-url",
            db_url,
            "--instance-dir",
            str(tmp_path / "inst"),
        ],
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "--real takes a dataset" in result.output
    assert f"--source real={sets['msp'].path}" in result.output
