"""What keeps a rater's request cycle cheap: the images rendered before serving (no request
encodes a PNG) and one rate-limit count per answer (the API per rater, images exempt)."""

from __future__ import annotations

from io import BytesIO

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import event, select, update
from study_schemas import RaterClient, engine_for, small_rating_study

from hvqeval.cli import cli
from study_app import create_app, server
from study_app.db import make_engine, run_transaction, session_scope
from study_app.images import image_cache_dir
from study_app.schema import Image, Rater, Study
from study_app.server import prerender_before_serving

SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def study(db_url, sets, tmp_path):
    # every item: more answers than the address limit below
    return small_rating_study(db_url, sets, tmp_path, "cost", tasks_per_rater=8)


def _app(db_url, instance, ip_rate="100000/60"):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "INSTANCE_DIR": str(instance),
            "RATE_LIMIT_RATER": "100000/60",
            "RATE_LIMIT_IP": ip_rate,
        }
    )


def test_serve_renders_every_image_before_binding_and_requests_only_read_them(
    study, db_url, tmp_path
):
    instance = tmp_path / "instance"
    config = {"DATABASE_URL": db_url, "INSTANCE_DIR": str(instance), "DISPLAY_SIZE": 512}
    seen = []
    total = prerender_before_serving(config, lambda done, total: seen.append((done, total)))
    with session_scope(engine_for(db_url), read_only=True) as s:
        tokens = set(s.scalars(select(Image.token)))
    cache = image_cache_dir(instance.resolve())
    rendered = {p.name for p in cache.glob("*.png")}
    assert total == len(tokens) and seen[-1] == (total, total)
    assert rendered == {f"{t}-512.png" for t in tokens}
    for path in cache.glob("*.png"):
        assert PILImage.open(path).size == (512, 512)
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.png")}

    assert prerender_before_serving(config) == total  # a second start renders nothing again
    app = _app(db_url, instance)
    rater = RaterClient(app.test_client(), study.public_id)
    rater.enter("viewer")
    url = rater.next()["images"][0]
    statements = []

    def seen(_connection, _cursor, statement, *_rest):
        statements.append(statement)

    engine = app.extensions["study_engine"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        reply = rater.client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert reply.status_code == 200
    assert PILImage.open(BytesIO(reply.data)).size == (512, 512)
    assert statements == []  # the signed URL says the image is the rater's: no lookup
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.png")} == stamps  # read only


def test_images_and_answers_do_not_count_against_the_address(study, db_url, tmp_path):
    # 5 requests a minute per address and route: a page is refused after 5, but a rater
    # answering 8 times and looking at images goes on (the API counts against the rater).
    app = _app(db_url, tmp_path / "instance", ip_rate="5/60")
    rater = RaterClient(app.test_client(), study.public_id)
    rater.enter("looker")
    task = rater.next()
    image_codes = [rater.client.get(task["images"][0]).status_code for _ in range(10)]
    assert image_codes == [200] * 10
    answers = []
    while task["state"] == "task":
        reply = rater.answer(task["task"], 4)
        answers.append(reply.status_code)
        task = reply.get_json()["next"]
    assert answers == [200] * 8 and task["state"] == "finished"
    page_codes = [app.test_client().get(f"/s/{study.public_id}/").status_code for _ in range(6)]
    assert page_codes == [200] * 4 + [429] * 2  # the rater's own entry was the fifth


def test_the_serve_command_renders_the_images_before_it_serves(
    study, db_url, tmp_path, monkeypatch
):
    instance = tmp_path / "served"
    found = {}

    def instead_of_gunicorn(config, **_kwargs):  # what the server would find at start
        found["images"] = sorted(image_cache_dir(instance.resolve()).glob("*.png"))

    monkeypatch.setattr(server, "serve", instead_of_gunicorn)
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    result = CliRunner().invoke(
        cli,
        ["study", "serve", "--database-url", db_url, "--instance-dir", str(instance)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    with session_scope(engine_for(db_url), read_only=True) as s:
        tokens = set(s.scalars(select(Image.token)))
    assert {p.name for p in found["images"]} == {f"{t}-512.png" for t in tokens}
    # not on a terminal (a service's log): lines saying what start-up is busy with, to the end
    lines = [line for line in result.stderr.splitlines() if "image" in line]
    assert lines[0] == f"upscales of {len(tokens)} image(s): rendering those not yet rendered"
    assert lines[-1].startswith(f"rendering images: {len(tokens)}/{len(tokens)} (")


def test_lookups_are_one_round_trip_on_postgresql_and_writes_stay_transactional(study, db_url):
    """Read-only work runs PostgreSQL lookups in autocommit (no BEGIN/COMMIT round trips); the
    pooled connection must come back transactional, or a failed request would keep half its
    writes."""
    engine = make_engine(db_url)
    seen = {}

    def look_up(connection):
        if engine.dialect.name == "postgresql":
            seen["autocommit"] = connection.connection.dbapi_connection.autocommit
        return connection.scalar(select(Study.name).where(Study.public_id == study.public_id))

    try:
        assert run_transaction(engine, look_up, read_only=True) == "cost"
        if engine.dialect.name == "postgresql":
            assert seen["autocommit"] is True

        def rename_then_fail(connection):
            connection.execute(
                update(Study).where(Study.public_id == study.public_id).values(name="half-done")
            )
            raise RuntimeError("the request failed after writing")

        with pytest.raises(RuntimeError):
            run_transaction(engine, rename_then_fail)  # the same pooled connection as above
        assert run_transaction(engine, look_up, read_only=True) == "cost"
    finally:
        engine.dispose()


def test_the_api_answers_with_rate_limits_switched_off(study, db_url, tmp_path):
    """Flask-Limiter's own ``RATELIMIT_ENABLED = False`` (a library key passed through to the
    app) switches the limits off; the API must still answer (the route limits refer to the
    app's limiter, which must live as long as the app)."""
    import gc

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "RATELIMIT_ENABLED": False,
        }
    )
    gc.collect()
    rater = RaterClient(app.test_client(), study.public_id)
    rater.enter("no-limits")
    assert rater.next()["state"] == "task"


def test_an_answer_that_claims_the_next_task_is_seven_statements(study, db_url, tmp_path):
    """The answer cycle's round trips: lock the rater, fill the slot (returning what the answer
    row needs), insert the answer, count it, claim the next slot, read its item, insert the
    hand-out. Right after the rater's open task is answered there is no open task to look for."""
    app = _app(db_url, tmp_path / "instance")
    rater = RaterClient(app.test_client(), study.public_id)
    rater.enter("counted")
    task = rater.next()
    statements = []

    def seen(_connection, _cursor, statement, *_rest):
        statements.append(statement.split()[0].upper())

    engine = app.extensions["study_engine"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        reply = rater.answer(task["task"], 3)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert reply.status_code == 200 and reply.get_json()["next"]["state"] == "task"
    work = [kind for kind in statements if kind != "BEGIN"]  # SQLite's BEGIN IMMEDIATE
    assert work == ["SELECT", "UPDATE", "INSERT", "UPDATE", "UPDATE", "SELECT", "INSERT"]


def test_a_rater_arriving_by_a_crowd_link_is_one_transaction(study, db_url, tmp_path):
    """The entry link's study, its example images and the new rater: one pooled checkout and
    three statements; coming back by the same link finds the same rater."""
    app = _app(db_url, tmp_path / "instance")
    engine = app.extensions["study_engine"]
    checkouts, statements = [], []

    def checked_out(*_args):
        checkouts.append(1)

    def seen(_connection, _cursor, statement, *_rest):
        statements.append(statement.split()[0].upper())

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        rater = RaterClient(app.test_client(), study.public_id)
        page = rater.get(f"/s/{study.public_id}/?PROLIFIC_PID=arriving&STUDY_ID=S1&SESSION_ID=X1")
    finally:
        event.remove(engine, "checkout", checked_out)
        event.remove(engine, "before_cursor_execute", seen)
    assert page.status_code == 200 and b'name="agree"' in page.data
    assert len(checkouts) == 1
    assert [kind for kind in statements if kind != "BEGIN"] == ["SELECT", "SELECT", "INSERT"]
    with session_scope(engine_for(db_url), read_only=True) as s:
        first = s.execute(
            select(Rater.id, Rater.platform_session).where(Rater.participant == "arriving")
        ).one()
    assert first.platform_session == "X1"
    again = RaterClient(app.test_client(), study.public_id)
    assert (
        again.get(
            f"/s/{study.public_id}/?PROLIFIC_PID=arriving&STUDY_ID=S1&SESSION_ID=X2"
        ).status_code
        == 200
    )
    with session_scope(engine_for(db_url), read_only=True) as s:
        rows = s.execute(
            select(Rater.id, Rater.platform_session).where(Rater.participant == "arriving")
        ).all()
    assert [(r.id, r.platform_session) for r in rows] == [(first.id, "X2")]  # the latest entry wins
