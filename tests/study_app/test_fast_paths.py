"""The study server's cheap paths keep its guarantees: one-transaction submit + next task,
remembered session cookies, cached instruction examples and image URLs, pooled PostgreSQL
connections checked after idle time, and the load generator's own HTTP client."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections import Counter

import psycopg
import pytest
from flask import url_for
from sqlalchemy import create_engine, func, select, text

from study_app import assign, create_app, db
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import driver_transaction, get_engine, read_session
from study_app.loadtest import HttpConnection, ServerClosed
from study_app.models import Answer, Assignment, Study

SECRET = "test-secret-key-0123456789abcdef"


def _study(db_url, sets, tmp_path, k=2, tasks=3, name="fast"):
    create_study(db_url, StudySettings(
        name=name, kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)), SourceSpec("msp", str(sets["msp"].path))),
        classes=(3, 5), per_class=2, answers_per_item=k, tasks_per_rater=tasks), tmp_path)
    with read_session(get_engine(db_url)) as s:
        study = s.scalar(select(Study).where(Study.name == name))
        s.expunge(study)
    return get_engine(db_url), study


def _answers(engine):
    with read_session(engine) as s:
        return s.execute(select(Answer.item_id, Answer.rater_id)).all()


def test_submit_and_next_stores_once_and_hands_out_the_next_task(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path)
    rater = assign.enter(engine, study.id, "p1")
    task = assign.next_task(engine, study, rater)
    seen = {task.token}
    for expected in (1, 2):
        done, following = assign.submit_and_next(engine, study, rater, task.token, 4, None, 800)
        assert done == expected and isinstance(following, assign.Task) and following.done == expected
        assert following.token not in seen
        with pytest.raises(assign.AnswerRejected) as again:  # a repeated submit stores nothing
            assign.submit_and_next(engine, study, rater, task.token, 4, None, 800)
        assert again.value.status == 409
        seen.add(following.token)
        task = following
    with pytest.raises(assign.AnswerRejected) as bad:
        assign.submit_and_next(engine, study, rater, task.token, 9, None, 800)
    assert bad.value.status == 400 and "1 to 5" in bad.value.message
    done, finished = assign.submit_and_next(engine, study, rater, task.token, 1, None, 800)
    assert done == 3 and isinstance(finished, assign.Finished) and re.fullmatch(r"[0-9A-F]{12}", finished.completion_code)
    assert assign.next_task(engine, study, rater).completion_code == finished.completion_code
    rows = _answers(engine)
    assert len(rows) == 3 and len(set(rows)) == 3 and len({item for item, _ in rows}) == 3


def test_submit_and_next_after_close_stores_the_answer_and_gives_the_code(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path)
    rater = assign.enter(engine, study.id, "p1")
    task = assign.next_task(engine, study, rater)
    from study_app.progress import set_status

    assert set_status(engine, study.name, "closed")
    done, following = assign.submit_and_next(engine, study, rater, task.token, 2, None, 10)
    assert done == 1 and isinstance(following, assign.Finished) and following.done == 1
    assert len(_answers(engine)) == 1


def test_parallel_duplicates_of_one_answer_store_one_row(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, tasks=4)
    rater = assign.enter(engine, study.id, "p1")
    task = assign.next_task(engine, study, rater)
    outcomes: list = []
    gate = threading.Barrier(6)

    def send():
        gate.wait()
        try:
            outcomes.append(assign.submit_and_next(engine, study, rater, task.token, 3, None, 10))
        except assign.AnswerRejected as err:
            outcomes.append(err.status)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [o for o in outcomes if isinstance(o, tuple)]
    assert len(stored) == 1 and sorted(o for o in outcomes if isinstance(o, int)) == [409] * 5
    assert len(_answers(engine)) == 1
    with read_session(engine) as s:  # and exactly one next task was handed out
        handed = s.scalar(select(func.count()).select_from(Assignment).where(Assignment.rater_id == rater))
    assert handed == 2 and isinstance(stored[0][1], assign.Task)


def test_many_raters_fill_a_study_through_the_combined_path(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, k=3, tasks=3)  # 8 items x 3 = 24 answers = 8 raters x 3
    raters = [assign.enter(engine, study.id, f"p{i}") for i in range(8)]
    current = {r: assign.next_task(engine, study, r) for r in raters}
    while any(isinstance(t, assign.Task) for t in current.values()):
        for r, t in list(current.items()):
            if isinstance(t, assign.Task):
                current[r] = assign.submit_and_next(engine, study, r, t.token, 5, None, 10)[1]
    rows = _answers(engine)
    assert len(rows) == 24 and len(set(rows)) == 24 and set(Counter(i for i, _ in rows).values()) == {3}


def test_api_answer_reply_carries_the_next_task_with_its_image_url(app, db_url, sets, tmp_path, new_rater):
    summary = create_study(db_url, StudySettings(
        name="web", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)),),
        classes=(3,), per_class=2, answers_per_item=1, tasks_per_rater=2), tmp_path)
    rater = new_rater(summary.public_id, "PID-9")
    first = rater.next()
    reply = rater.answer(first["task"], 3)
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["stored"] is True and body["done"] == 1 and body["next"]["state"] == "task"
    token = body["next"]["images"][0].rsplit("/", 1)[1][:-len(".png")]
    with app.test_request_context("/", base_url="http://x/prefix"):
        from study_app.rater import _image_url

        assert _image_url(token) == url_for("images.image", token=token) == f"/prefix/img/{token}.png"
    assert rater.get(body["next"]["images"][0]).status_code == 200
    again = rater.answer(first["task"], 3)
    assert again.status_code == 409 and again.get_json() == {"error": "this task was already answered"}


def test_remembered_session_cookies_are_still_checked(app, db_url, sets, tmp_path, new_rater, monkeypatch):
    summary = create_study(db_url, StudySettings(
        name="cookie", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)),),
        classes=(3,), per_class=2, answers_per_item=1, tasks_per_rater=2), tmp_path)
    rater = new_rater(summary.public_id, "PID-7")
    assert rater.api("next").status_code == 200  # the cookie is now remembered
    cookie = rater.client.get_cookie("session")
    tampered = cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB")
    rater.client.set_cookie("session", tampered)
    refused = rater.api("next")
    assert refused.status_code in (400, 403)  # no session: CSRF or "open the study link first"
    rater.client.set_cookie("session", cookie.value)
    assert rater.api("next").status_code == 200
    # Past the session lifetime the remembered cookie is refused like an unknown one.
    later = time.time() + app.permanent_session_lifetime.total_seconds() + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert rater.api("next").status_code in (400, 403)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a SQLite file recreated is the case
def test_consent_examples_are_per_study_even_with_reused_ids(db_url, sets, tmp_path, tmp_path_factory):
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": db_url, "RATE_LIMIT_RATER": "1000/60",
                      "RATE_LIMIT_IP": "1000/60"})
    first = create_study(db_url, StudySettings(
        name="one", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)), SourceSpec("msp", str(sets["msp"].path))),
        classes=(3,), per_class=2, answers_per_item=1, tasks_per_rater=1), tmp_path)

    def example_tokens(public_id):
        client = app.test_client()
        client.get(f"/s/{public_id}/?PROLIFIC_PID=x1")
        page = client.get(f"/s/{public_id}/consent").data.decode()
        return set(re.findall(r"/img/([A-Za-z0-9_-]+)\.png", page))

    one = example_tokens(first.public_id)
    assert one
    db.dispose_engines()
    path = db_url.removeprefix("sqlite:///")
    import os

    os.remove(path)  # a new database in the same place: study ids start again at 1
    fresh_dir = tmp_path_factory.mktemp("again")
    second = create_study(db_url, StudySettings(
        name="two", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)), SourceSpec("msp", str(sets["msp"].path))),
        classes=(5,), per_class=2, answers_per_item=1, tasks_per_rater=1), fresh_dir)
    two = example_tokens(second.public_id)
    assert two and not one & two


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_idle_pooled_postgresql_connections_are_replaced_when_dead(db_url, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = get_engine(db_url)
    with driver_transaction(engine, write=False) as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    killer = create_engine(db_url)
    with killer.begin() as conn:  # e.g. a server restart or an idle timeout
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    killer.dispose()
    time.sleep(0.2)
    with driver_transaction(engine, write=False) as cur:  # the dead one is pinged, dropped, replaced
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.parametrize("checkout", [driver_transaction, db.driver_statement], ids=["transaction", "statement"])
def test_a_postgresql_connection_that_breaks_in_use_is_dropped_from_the_pool(db_url, monkeypatch, checkout):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 1e9)  # no ping: only the in-use failure can drop it
    engine = get_engine(db_url)
    with checkout(engine) as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    killer = create_engine(db_url)
    with pytest.raises(psycopg.OperationalError):
        with checkout(engine) as cur:
            cur.execute("SELECT pg_backend_pid()")
            assert cur.fetchone()[0] == pid  # the same pooled connection
            with killer.begin() as conn:  # e.g. a server restart while a request runs
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
            time.sleep(0.2)
            cur.execute("SELECT 1")
    killer.dispose()
    with checkout(engine) as cur:  # a new connection, not the dead one
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=abc; HttpOnly")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        else:
            self.send_response(204)
            self.end_headers()
        self.server.peers.add(self.client_address)


def test_load_generator_http_client_keeps_alive_and_reads_every_body_kind():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.peers = set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = HttpConnection("127.0.0.1", server.server_address[1], timeout=5)
        status, headers, body = conn.request("POST", "/echo", b'{"a": 1}', {"Content-Type": "application/json"})
        assert (status, body) == (200, b'{"a": 1}') and ("set-cookie", "session=abc; HttpOnly") in headers
        assert conn.request("GET", "/chunked", None, {})[2] == b"hello chunked world"
        assert conn.request("GET", "/empty", None, {})[:1] == (204,)
        assert len(server.peers) == 1 and conn.open  # all on one kept-alive connection
        assert conn.request("GET", "/close", None, {})[2] == b"until close" and not conn.open
        again = HttpConnection("127.0.0.1", server.server_address[1], timeout=5)
        again.sock.shutdown(2)  # the peer hangs up: reported as a retryable close, not a bad reply
        with pytest.raises((ServerClosed, OSError)):
            again.request("GET", "/empty", None, {})
        again.close()
    finally:
        server.shutdown()
        server.server_close()


def test_csrf_token_is_looked_for_where_the_request_can_carry_it(app, db_url, sets, tmp_path, new_rater):
    summary = create_study(db_url, StudySettings(
        name="csrf", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)),),
        classes=(3,), per_class=2, answers_per_item=1, tasks_per_rater=2), tmp_path)
    rater = new_rater(summary.public_id, "PID-5")
    path = f"/s/{summary.public_id}/api/next"
    assert rater.client.post(path, json={}).status_code == 400  # JSON without the header
    assert rater.client.post(path, json={"csrf_token": rater.csrf}).status_code == 400  # not a form field
    assert rater.client.post(path, json={}, headers={"X-CSRFToken": rater.csrf[:-3] + "abc"}).status_code == 400
    assert rater.client.post(path, json={}, headers={"X-CSRFToken": rater.csrf}).status_code == 200
    assert rater.client.post(path, data={"csrf_token": rater.csrf}).status_code == 200  # a form field counts
    assert rater.client.post(path, data={"other": "x"}, headers={"X-CSRFToken": rater.csrf}).status_code == 200
    assert rater.client.post(path, data={"other": "x"}).status_code == 400


def test_a_remembered_csrf_token_is_accepted_only_with_its_own_session(app, db_url, sets, tmp_path, new_rater):
    summary = create_study(db_url, StudySettings(
        name="csrfcache", kind="rating", sources=(SourceSpec("ff", str(sets["ff"].path)),),
        classes=(3,), per_class=2, answers_per_item=1, tasks_per_rater=2), tmp_path)
    first, second = new_rater(summary.public_id, "PID-A"), new_rater(summary.public_id, "PID-B")
    path = f"/s/{summary.public_id}/api/next"
    assert first.client.post(path, json={}, headers={"X-CSRFToken": first.csrf}).status_code == 200
    assert first.csrf in app.extensions["csrf"]._verified  # remembered after its signature checked out
    # The remembered token is still bound to the session that issued it.
    assert second.client.post(path, json={}, headers={"X-CSRFToken": first.csrf}).status_code == 400
    assert second.client.post(path, json={}, headers={"X-CSRFToken": second.csrf}).status_code == 200
    assert first.client.post(path, json={}, headers={"X-CSRFToken": first.csrf}).status_code == 200
    stranger = app.test_client()  # no session at all
    assert stranger.post(path, json={}, headers={"X-CSRFToken": first.csrf}).status_code == 400


def test_memory_rate_limits_start_no_thread_per_request_and_still_expire():
    from limits import RateLimitItemPerSecond
    from limits.strategies import FixedWindowRateLimiter

    from study_app.security import InlineExpiryMemoryStorage, open_rate_limit_storage

    storage = open_rate_limit_storage("memory://")
    assert isinstance(storage, InlineExpiryMemoryStorage)
    limiter, item = FixedWindowRateLimiter(storage), RateLimitItemPerSecond(3, 1)
    time.sleep(0.05)  # the storage's one timer from its construction has run
    before = threading.active_count()
    hits = []
    for _ in range(5):
        hits.append(limiter.hit(item, "rater-1"))
        time.sleep(0.015)  # longer than MemoryStorage's 10 ms timer
    assert hits == [True, True, True, False, False]
    assert threading.active_count() == before
    limiter.hit(item, "rater-2")
    time.sleep(1.05)
    storage.PURGE_SECONDS = 0.0
    limiter.hit(item, "rater-3")  # purges the counters whose window ended
    assert [k for k in storage.storage if "rater-" in k] == [k for k in storage.storage if "rater-3" in k]
    assert limiter.hit(item, "rater-1")  # a new window


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_hot_path_writers_hold_the_writer_queue_for_their_transaction(db_url, sets, tmp_path):
    import fcntl
    import os

    engine, study = _study(db_url, sets, tmp_path)
    queue = db._writer_queue(engine)
    assert queue is not None and queue.path == engine.url.database + ".writers"
    probe = os.open(queue.path, os.O_RDWR | os.O_CREAT)  # another open file, as another thread or process has

    def queue_is_free() -> bool:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True

    try:
        assert queue_is_free()
        with driver_transaction(engine) as cur:
            assert not queue_is_free()  # held for the whole write transaction
            cur.execute("UPDATE study SET seed = seed + 1 WHERE id = ?", (study.id,))
        assert queue_is_free()
        with driver_transaction(engine, write=False):
            assert queue_is_free()  # readers do not queue
        with pytest.raises(ZeroDivisionError):
            with driver_transaction(engine):
                1 / 0
        assert queue_is_free()  # released on errors too
        inside, overlaps = [], []

        def write(n):
            for _ in range(n):
                with driver_transaction(engine) as cursor:
                    inside.append(1)
                    overlaps.append(len(inside) > 1)
                    cursor.execute("UPDATE study SET seed = seed + 1 WHERE id = ?", (study.id,))
                    inside.pop()

        threads = [threading.Thread(target=write, args=(25,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(overlaps) == 100 and not any(overlaps)
        with read_session(engine) as s:
            assert s.scalar(select(Study.seed).where(Study.id == study.id)) == study.seed + 101
    finally:
        os.close(probe)


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgresql_hot_paths_are_one_round_trip_each_on_analysed_tables(db_url, sets, tmp_path):
    from sqlalchemy.pool import StaticPool

    _, study = _study(db_url, sets, tmp_path, k=2, tasks=4)
    engine = create_engine(db_url, poolclass=StaticPool)  # one connection, traced below
    try:
        with engine.connect() as conn:  # create_study analysed the rows it brought in
            slots = conn.execute(text("SELECT count(*) FROM slot")).scalar()
            assert slots > 0 and conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'slot'::regclass")).scalar() == slots
        pooled = engine.raw_connection()
        connection = pooled.driver_connection
        pooled.close()
        trace_path = tmp_path / "protocol.trace"

        def round_trips(call):
            with open(trace_path, "w") as trace:
                connection.pgconn.trace(trace.fileno())
                try:
                    result = call()
                finally:
                    connection.pgconn.untrace()
            return result, trace_path.read_text().count("\tReadyForQuery")

        rater, trips = round_trips(lambda: assign.enter(engine, study.id, "p1"))
        assert trips == 1
        task, trips = round_trips(lambda: assign.next_task(engine, study, rater))
        assert trips == 1 and isinstance(task, assign.Task)
        (done, following), trips = round_trips(
            lambda: assign.submit_and_next(engine, study, rater, task.token, 4, None, 700))
        assert trips == 1 and done == 1 and isinstance(following, assign.Task)
        with pytest.raises(assign.AnswerRejected) as refused:  # a repeat: refused, still one round trip
            round_trips(lambda: assign.submit_and_next(engine, study, rater, task.token, 4, None, 700))
        assert refused.value.status == 409
        assert len(_answers(engine)) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgresql_functions_go_with_the_migration(db_url):
    engine = get_engine(db_url)
    names = "SELECT proname FROM pg_proc WHERE proname LIKE 'hvqeval%%' AND pg_function_is_visible(oid) ORDER BY 1"
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql(names)] == ["hvqeval_answer", "hvqeval_next_task"]
    db.downgrade(db_url, "0001")
    try:
        with engine.connect() as conn:
            assert list(conn.exec_driver_sql(names)) == []
    finally:
        db.upgrade(db_url, "head")
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql(names)] == ["hvqeval_answer", "hvqeval_next_task"]


def test_parallel_first_entries_of_one_participant_give_one_rater(db_url, sets, tmp_path):
    from study_app.models import Rater

    engine, study = _study(db_url, sets, tmp_path)
    for round_no in range(5):
        participant = f"twin-{round_no}"
        gate = threading.Barrier(6)
        ids = []

        def enter():
            gate.wait()
            ids.append(assign.enter(engine, study.id, participant))

        threads = [threading.Thread(target=enter) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 6 and len(set(ids)) == 1
        with read_session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Rater).where(Rater.participant == participant)) == 1
