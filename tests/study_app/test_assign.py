"""Assignment invariants on SQLite and PostgreSQL: exactly k distinct raters per item, no item
twice to one rater, even filling, lease expiry, and repeated submits that store nothing."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from study_schemas import engine_for

from study_app import assign
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import downgrade, session_scope, upgrade
from study_app.schema import NEVER_LEASED, Answer, Assignment, Slot, Study


def _study(
    db_url, sets, tmp_path, kind="rating", per_class=2, classes=(3,), k=3, tasks=100, name="s"
):
    sources = (
        (SourceSpec("ff", str(sets["ff"].path)),)
        if kind == "rating"
        else (SourceSpec("ff", str(sets["ff"].path)), SourceSpec("msp", str(sets["msp"].path)))
    )
    create_study(
        db_url,
        StudySettings(
            name=name,
            kind=kind,
            sources=sources,
            classes=classes,
            per_class=per_class,
            answers_per_item=k,
            tasks_per_rater=tasks,
            pairs_per_class=per_class * 2 if kind == "pairwise" else None,
        ),
        tmp_path,
    )
    with session_scope(engine_for(db_url)) as s:
        study = s.scalar(select(Study).where(Study.name == name))
        s.expunge(study)
    return engine_for(db_url), study


def _answers(engine, study):
    with session_scope(engine) as s:
        return s.execute(
            select(Answer.item_id, Answer.rater_id).where(Answer.study_id == study.id)
        ).all()


def _rater(engine, study, name):
    rater_id = assign.enter(engine, study, name).rater_id
    assign.record_consent(engine, rater_id)
    return rater_id


def test_each_item_gets_exactly_k_answers_from_k_distinct_raters(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, per_class=3, classes=(3, 5), k=3, tasks=4)
    raters = [_rater(engine, study, f"p{i}") for i in range(6)]
    finished = set()
    while len(finished) < len(raters):  # round-robin: raters interleave like real traffic
        for r in raters:
            if r in finished:
                continue
            result = assign.next_task(engine, study.public_id, r)
            if isinstance(result, assign.Finished):
                finished.add(r)
                continue
            assign.submit(engine, study.public_id, r, result.token, 1 + r % 5, None, 900)
    rows = _answers(engine, study)
    per_item = Counter(item for item, _ in rows)
    assert len(per_item) == 6 and set(per_item.values()) == {3}  # 6 items x k=3 = 18 answers
    assert len(set(rows)) == len(rows)  # (item, rater) unique: k distinct raters
    assert max(Counter(r for _, r in rows).values()) <= 4  # tasks_per_rater


def test_items_fill_evenly_and_a_rater_never_gets_an_item_twice(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, per_class=2, classes=(3, 5), k=3, tasks=100)
    # 4 items: the first 4 claims (by 4 raters) must cover 4 different items.
    firsts = []
    for i in range(4):
        r = _rater(engine, study, f"even{i}")
        firsts.append(assign.next_task(engine, study.public_id, r))
    with session_scope(engine) as s:
        leased = s.execute(select(Assignment.item_id)).scalars().all()
    assert len(set(leased)) == 4
    # One rater alone answers every item once, then gets the completion code instead of a repeat.
    solo = _rater(engine, study, "solo")
    seen = []
    while isinstance(result := assign.next_task(engine, study.public_id, solo), assign.Task):
        seen.append(result.token)
        assign.submit(engine, study.public_id, solo, result.token, 3, None, 10)
    assert isinstance(result, assign.Finished) and result.done == 4
    with session_scope(engine) as s:
        items = s.scalars(select(Assignment.item_id).where(Assignment.rater_id == solo)).all()
    assert sorted(items) == sorted(set(items)) and len(items) == 4


def test_open_task_is_returned_again_until_answered(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path)
    r = _rater(engine, study, "reload")
    first = assign.next_task(engine, study.public_id, r)
    again = assign.next_task(engine, study.public_id, r)  # e.g. the rater reloads the page
    assert isinstance(first, assign.Task) and again.token == first.token


def test_expired_lease_returns_to_the_pool_and_the_late_answer_is_refused(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, per_class=1, classes=(3,), k=1)
    slow, fast = _rater(engine, study, "slow"), _rater(engine, study, "fast")
    held = assign.next_task(engine, study.public_id, slow)
    assert isinstance(held, assign.Task)
    assert isinstance(
        assign.next_task(engine, study.public_id, fast), assign.Finished
    )  # the only slot is leased
    with session_scope(engine) as s:  # time passes: the lease runs out
        s.execute(update(Slot).values(lease_expires_at=assign.utcnow() - dt.timedelta(seconds=1)))
    fast2 = _rater(engine, study, "fast2")
    taken = assign.next_task(engine, study.public_id, fast2)
    assert isinstance(taken, assign.Task) and taken.token != held.token
    with pytest.raises(assign.AnswerRejected) as late:
        assign.submit(engine, study.public_id, slow, held.token, 5, None, 10)
    assert late.value.status == 409
    assign.submit(engine, study.public_id, fast2, taken.token, 2, None, 10)
    assert len(_answers(engine, study)) == 1


def test_a_late_answer_after_a_newer_hand_out_is_stored_and_the_newer_task_comes_next(
    db_url, sets, tmp_path
):
    engine, study = _study(db_url, sets, tmp_path, per_class=2, classes=(3,), k=1)  # 2 items
    r = _rater(engine, study, "late")
    first = assign.next_task(engine, study.public_id, r)
    past = assign.utcnow() - dt.timedelta(seconds=1)
    with session_scope(engine) as s:  # time passes: the first task's lease runs out
        s.execute(update(Slot).where(Slot.lease_token.is_not(None)).values(lease_expires_at=past))
        s.execute(update(Assignment).values(expires_at=past))
    second = assign.next_task(engine, study.public_id, r)
    assert isinstance(second, assign.Task) and second.token != first.token
    # nobody took the first task's slot: the late answer counts, and the open task comes next
    done, following = assign.submit(
        engine, study.public_id, r, first.token, 4, None, 10, with_next=True
    )
    assert done == 1 and isinstance(following, assign.Task) and following.token == second.token
    with session_scope(engine) as s:
        handed = s.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.rater_id == r)
        )
    assert handed == 2 and len(_answers(engine, study)) == 1


def test_migration_0006_gives_never_leased_slots_a_past_expiry_and_claims_go_on(
    db_url, sets, tmp_path
):
    engine, study = _study(db_url, sets, tmp_path, per_class=2, classes=(3,), k=1)  # 2 slots
    held = assign.next_task(engine, study.public_id, _rater(engine, study, "before"))
    engine.dispose()

    def never_leased():
        with session_scope(engine_for(db_url)) as s:
            return s.scalars(select(Slot.lease_expires_at).where(Slot.lease_token.is_(None))).all()

    downgrade(db_url, "0005")
    assert never_leased() == [None]  # before 0006 a never-leased slot had no expiry
    upgrade(db_url)
    assert never_leased() == [NEVER_LEASED]
    after = assign.next_task(engine, study.public_id, _rater(engine, study, "after"))
    assert isinstance(after, assign.Task) and after.token != held.token  # the free slot
    assert never_leased() == []


def test_resubmitting_stores_nothing(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path, kind="pairwise", per_class=2)
    r = _rater(engine, study, "double")
    task = assign.next_task(engine, study.public_id, r)
    assign.submit(engine, study.public_id, r, task.token, "left", None, 10)
    for answer in ("left", "right"):
        with pytest.raises(assign.AnswerRejected) as again:
            assign.submit(engine, study.public_id, r, task.token, answer, None, 10)
        assert again.value.status == 409
    assert len(_answers(engine, study)) == 1


def test_answers_for_tasks_of_another_rater_are_refused(db_url, sets, tmp_path):
    engine, study = _study(db_url, sets, tmp_path)
    owner, thief = _rater(engine, study, "owner"), _rater(engine, study, "thief")
    task = assign.next_task(engine, study.public_id, owner)
    with pytest.raises(assign.AnswerRejected) as err:
        assign.submit(engine, study.public_id, thief, task.token, 3, None, 10)
    assert err.value.status == 404 and not _answers(engine, study)


@pytest.mark.parametrize(
    "kind, answer, reason",
    [
        ("rating", 0, None),
        ("rating", 6, None),
        ("rating", 2.5, None),
        ("rating", True, None),
        ("rating", "3", None),
        ("rating", "unknown", None),
        ("rating", "unknown", "because"),
        ("rating", 3, "other"),
        ("pairwise", "a", None),
        ("pairwise", "up", None),
        ("pairwise", None, None),
        ("pairwise", ["left"], None),
    ],
)
def test_parse_answer_rejects_everything_but_valid_answers(kind, answer, reason):
    with pytest.raises(assign.AnswerRejected) as err:
        assign.parse_answer(kind, answer, reason)
    assert err.value.status == 400


def test_parse_answer_accepts_valid_answers():
    assert assign.parse_answer("rating", 5, None) == (5, None, None)
    assert assign.parse_answer("pairwise", "right", "") == (None, "right", None)
    assert assign.parse_answer("pairwise", "unknown", "image-failed") == (
        None,
        "unknown",
        "image-failed",
    )


def test_parallel_raters_and_parallel_requests_of_one_rater(db_url, sets, tmp_path):
    """Threads in one process share the engine's pool: 12 raters plus a second 'tab' each."""
    engine, study = _study(db_url, sets, tmp_path, per_class=3, classes=(3, 5), k=3, tasks=3)
    errors = []

    def work(name):
        try:
            r = _rater(engine, study, name)
            while True:
                a = assign.next_task(engine, study.public_id, r)
                b = assign.next_task(engine, study.public_id, r)  # second tab asks at the same time
                if isinstance(a, assign.Finished):
                    return
                assert isinstance(b, assign.Task) and b.token == a.token
                try:
                    assign.submit(engine, study.public_id, r, a.token, 4, None, 5)
                except assign.AnswerRejected as err:
                    assert err.status == 409  # the other tab answered first
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    rows = _answers(engine, study)
    assert len(rows) == 18 and len(set(rows)) == 18  # 6 items x 3, all (item, rater) distinct
    assert set(Counter(i for i, _ in rows).values()) == {3}
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Slot).where(Slot.filled.is_(False))) == 0


def test_one_participant_entering_at_once_from_many_requests_is_one_rater(db_url, sets, tmp_path):
    """A double click on the study link: the first entry inserts the rater, every other one
    (waiting for it on PostgreSQL's unique index) finds that row; one row, one id for all."""
    from study_app.schema import Rater

    engine, study = _study(db_url, sets, tmp_path)
    ids, errors, start = [], [], threading.Barrier(8)

    def work():
        try:
            start.wait()
            ids.append(
                assign.enter(engine, study, "double-click", {"platform": "prolific"}).rater_id
            )
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(ids) == 8 and len(set(ids)) == 1
    with session_scope(engine) as s:
        rows = s.execute(select(Rater.id, Rater.platform).where(Rater.study_id == study.id)).all()
    assert [tuple(r) for r in rows] == [(ids[0], "prolific")]
