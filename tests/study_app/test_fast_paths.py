"""The study server's cheap paths keep its guarantees: one-transaction submit + next task,
remembered session cookies, cached instruction examples and image URLs, pooled PostgreSQL
connections checked after idle time, and the load generator's own HTTP client."""

from __future__ import annotations

import datetime as dt
import http.server
import re
import threading
import time
from collections import Counter

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
