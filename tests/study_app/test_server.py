"""A real gunicorn server on loopback with raters in parallel (SQLite and PostgreSQL): afterwards
every item has exactly k answers from k distinct raters, nothing lost, nothing doubled, also
when the whole server is killed with SIGKILL mid-study and started again."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select
from study_schemas import dispose_all, engine_for
from study_server import LocalServer, SimulatedRater

from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import session_scope
from study_app.export import export_rows
from study_app.schema import Answer, Assignment, Slot

RATERS = 120
# Raters arrive until the study is full, as on a crowd-sourcing platform. The capacity is
# exactly RATERS x 3 answers, but a rater near the end may find every open slot leased to
# someone else or on items they already rated, and leave with fewer than 3: a few spare
# raters take the last open slots (and the rest find the study full).
SPARE_RATERS = 8


def _study(db_url, sample_set_factory, tmp_path, per_class=20):
    ff = sample_set_factory("ff", "tiny_ff", per_class, seed=1)
    msp = sample_set_factory("msp", "tiny_msp", per_class, seed=2)
    return create_study(
        db_url,
        StudySettings(
            name="load",
            kind="rating",
            sources=(SourceSpec("ff", str(ff.path)), SourceSpec("msp", str(msp.path))),
            classes=(3, 5, 7),
            per_class=per_class,
            answers_per_item=3,
            tasks_per_rater=3,
            no_examples=True,
        ),
        tmp_path,
    )


def _stored(db_url):
    with session_scope(engine_for(db_url)) as s:
        rows = s.execute(select(Answer.item_id, Answer.rater_id)).all()
        unfilled = s.scalar(select(func.count()).select_from(Slot).where(Slot.filled.is_(False)))
    return rows, unfilled


def _assert_exactly_k(rows, unfilled, answers):
    assert len(rows) == answers  # every stored answer the raters were told about is one row
    assert len(set(rows)) == len(rows)  # no (item, rater) twice
    assert set(Counter(item for item, _ in rows).values()) == {3}  # exactly k per item
    assert unfilled == 0


@pytest.mark.slow
def test_120_parallel_raters_finish_a_study_through_gunicorn(db_url, sample_set_factory, tmp_path):
    # 2 models x 3 classes x 20 images = 120 items; k = 3 -> 360 answers = 120 raters x 3 tasks.
    summary = _study(db_url, sample_set_factory, tmp_path)
    assert summary.answers_needed == RATERS * 3
    with LocalServer(db_url, str(tmp_path), workers=2, threads=8) as server:
        raters = [
            SimulatedRater(server.url, summary.public_id, f"p{i}")
            for i in range(RATERS + SPARE_RATERS)
        ]
        with ThreadPoolExecutor(16) as pool:
            done = list(
                pool.map(
                    lambda r: r.run(lambda task: 1 + len(task["task"]) % 5, fetch_images=True),
                    raters,
                )
            )
    assert all(
        (r.state == "finished" and r.code) if r.answers else r.state == "unavailable" for r in done
    ), Counter((r.state, r.answers) for r in done)
    assert all(r.answers <= 3 for r in done) and sum(r.answers for r in done) == RATERS * 3
    _assert_exactly_k(*_stored(db_url), RATERS * 3)
    with session_scope(engine_for(db_url)):
        exported = export_rows(engine_for(db_url), "load")
    answered = {r.participant for r in done if r.answers}
    assert len(exported) == RATERS * 3 and {r["rater"] for r in exported} == answered


@pytest.mark.slow
def test_a_server_killed_mid_study_and_restarted_loses_and_doubles_nothing(
    db_url, sample_set_factory, tmp_path
):
    """SIGKILL the arbiter and every worker while raters are answering; a new server on the same
    database serves the rest. Raters retry what failed (as the page does): in the end each item
    has exactly k answers, each answer a rater was told was stored is in the database once."""
    summary = _study(db_url, sample_set_factory, tmp_path, per_class=10)  # 60 items, 180 answers
    server = LocalServer(db_url, str(tmp_path), workers=2, threads=4).__enter__()
    port, killed = server.port, threading.Event()
    confirmed: list[tuple[str, str]] = []  # (participant, task) the server said it stored

    def rate(participant: str) -> int:
        rater = SimulatedRater(f"http://127.0.0.1:{port}", summary.public_id, participant)
        rng = random.Random(participant)
        entered = False
        while True:
            try:
                if not entered:
                    rater.enter()  # again if the kill cut it short: a rater must consent first
                    entered = True
                current = rater.api("next")
                while current["state"] == "task":
                    reply = rater.api(
                        "answer",
                        {"task": current["task"], "answer": rng.randint(1, 5), "response_ms": 900},
                    )
                    confirmed.append((participant, current["task"]))
                    current = reply["next"]
                return
            except requests.HTTPError as err:
                if err.response.status_code != 409:  # 409: a retried answer that was stored already
                    raise
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # The kill cut the connection, before or in the middle of the reply.
                killed.wait(30)
                threading.Event().wait(0.2)  # the page retries after a moment

    try:
        with ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(rate, f"k{i}") for i in range(60 + 8)]
            while len(confirmed) < 60:
                threading.Event().wait(0.05)
            server.kill()  # mid-study: about a third of the answers are in
            dispose_all()
            server = LocalServer(db_url, str(tmp_path), workers=2, threads=4, port=port).__enter__()
            killed.set()
            for future in futures:
                future.result(timeout=240)
    finally:
        server.__exit__(None, None, None)
    _assert_exactly_k(*_stored(db_url), 180)
    with session_scope(engine_for(db_url)) as s:
        answered = set(
            s.scalars(select(Assignment.token).join(Answer, Answer.assignment_id == Assignment.id))
        )
    # An answer whose reply was lost in the kill may be stored without the rater knowing (a retry
    # then gets 409); every answer a rater was told about is stored, once.
    assert len(set(confirmed)) == len(confirmed) and {task for _, task in confirmed} <= answered
    assert len(confirmed) >= 180 - 24  # at most one reply lost per rater thread
