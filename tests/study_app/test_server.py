"""A real gunicorn server on loopback with 120 simulated raters in parallel (SQLite and PostgreSQL):
afterwards every item has exactly k answers from k distinct raters, nothing lost, nothing doubled."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import session_scope
from study_schemas import dispose_all, engine_for
from study_app.export import export_rows
from study_app.loadtest import LocalServer, run_raters
from study_app.schema import Answer, Slot

RATERS = 120
# Raters arrive until the study is full, as on a crowd-sourcing platform. The capacity is
# exactly RATERS x 3 answers, but a rater near the end may find every open slot leased to
# someone else or on items they already rated, and leave with fewer than 3: a few spare
# raters take the last open slots (and the rest find the study full).
SPARE_RATERS = 8


@pytest.mark.slow
def test_120_parallel_raters_finish_a_study_through_gunicorn(db_url, sample_set_factory, tmp_path):
    # 2 models x 3 classes x 20 images = 120 items; k = 3 -> 360 answers = 120 raters x 3 tasks.
    ff = sample_set_factory("ff", "tiny_ff", 20, seed=1)
    msp = sample_set_factory("msp", "tiny_msp", 20, seed=2)
    summary = create_study(db_url, StudySettings(
        name="load", kind="rating", sources=(SourceSpec("ff", str(ff.path)), SourceSpec("msp", str(msp.path))),
        classes=(3, 5, 7), per_class=20, answers_per_item=3, tasks_per_rater=3), tmp_path)
    assert summary.answers_needed == RATERS * 3
    dispose_all()  # the server processes open their own connections
    with LocalServer(db_url, str(tmp_path), workers=2, threads=8) as server:
        result = run_raters("127.0.0.1", server.port, summary.public_id, RATERS + SPARE_RATERS, "rating",
                            time_limit=90, fetch_images=True)
    assert not result.errors, (result.errors[:5], server.output[-3000:])
    # Everyone who answered got a completion code; only raters who got no task at all did not.
    assert all((log.state == "finished" and log.code) if log.answers else log.state == "unavailable"
               for log in result.logs), Counter((log.state, log.answers) for log in result.logs)
    assert all(log.answers <= 3 for log in result.logs)
    assert result.answers == RATERS * 3  # every 200 "stored" on the client side ...
    engine = engine_for(db_url)
    with session_scope(engine) as s:
        rows = s.execute(select(Answer.item_id, Answer.rater_id)).all()
        unfilled = s.scalar(select(func.count()).select_from(Slot).where(Slot.filled.is_(False)))
    assert len(rows) == RATERS * 3  # ... is one row in the database: nothing lost
    assert len(set(rows)) == len(rows)  # no (item, rater) twice
    assert set(Counter(item for item, _ in rows).values()) == {3}  # exactly k per item
    assert unfilled == 0
    exported = export_rows(db_url, "load")
    answered = {log.participant for log in result.logs if log.answers}
    assert len(exported) == RATERS * 3 and len({r["rater"] for r in exported}) == len(answered)


def test_a_server_whose_start_up_check_fails_is_stopped_not_left_running(tmp_path, monkeypatch):
    import http.client

    def garbled(self):  # a reply that is not HTTP, as from another program on the port
        raise http.client.BadStatusLine("*, *::before { box-sizing: border-box; }")

    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", garbled)
    server = LocalServer(f"sqlite:///{tmp_path / 'study.sqlite3'}", str(tmp_path), workers=1, threads=1)
    with pytest.raises(http.client.BadStatusLine):
        server.__enter__()
    assert server.process is not None and server.process.poll() is not None  # the child was stopped
