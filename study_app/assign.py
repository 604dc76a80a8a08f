"""Handing out items to raters and storing their answers, race-free on SQLite and PostgreSQL.

Invariants (paper Appendix G: "each image was rated 3 times by different individuals"):
exactly k answers per item from k distinct raters, a rater never sees an item twice, items
fill evenly, unanswered leases return to the pool, a repeated submit stores nothing.

One path for both databases, each request one transaction (``db.run_transaction``):

1. **Lock the rater**: ``SELECT study.*, rater.... FROM study JOIN rater ... WHERE rater.id =
   :rater AND study.public_id = :link FOR UPDATE OF rater``. One rater's parallel requests (two
   tabs, a double click) queue here on PostgreSQL; on SQLite every transaction starts with
   ``BEGIN IMMEDIATE`` and holds the database's write lock, and the dialect leaves ``FOR
   UPDATE`` out. The same row is the study of the link (read in the request's own transaction:
   its status may change; no lookup of its own) and says whether the rater gave consent; a
   rater of another study finds no row.
2. **Claim** = one guarded statement::

       UPDATE slot SET lease = ... WHERE id = (SELECT id FROM slot WHERE <free> AND <item not
           yet given to this rater> ORDER BY slot_no, shuffle LIMIT 1 FOR UPDATE SKIP LOCKED)
       AND <free> RETURNING id, item_id

   The outer ``<free>`` re-checks the row after PostgreSQL's row lock (READ COMMITTED
   re-evaluates it on the newest version), so two raters never both win one slot.
   ``ORDER BY slot_no`` hands out every item's first slot before any item's second (even
   filling). An expired lease counts as free.
3. The hand-out row ``assignment`` has ``UNIQUE(item_id, rater_id)``: never an item twice.
4. **Submit** fills the slot only ``WHERE lease_token = <the rater's> AND NOT filled``; the
   answer row has ``UNIQUE(assignment_id)`` and ``UNIQUE(item_id, rater_id)``.

The statements of a rater's request cycle are built once, at import, with ``bindparam``
placeholders, and executed with that request's values. Building a SQLAlchemy statement and
generating its cache key cost more CPU than running it on SQLite; a statement object built once
keeps its cache key (SQLAlchemy memoizes it on the object), so each execution only looks its
compiled form up in the engine's own compiled cache. Nothing is cached but the statements.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, exists, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from study_app import checks
from study_app.db import run_transaction
from study_app.handout import choice_of, hand_out, new_token, store_answer
from study_app.schema import (
    Assignment,
    Image,
    Item,
    Rater,
    Slot,
    Study,
    detached_study,
    lease_is_free,
)

UNKNOWN_REASONS = ("image-failed", "cannot-decide", "other")
MAX_RESPONSE_MS = 24 * 3600 * 1000


def utcnow() -> dt.datetime:
    """Naive UTC (the schema stores UTC without a zone on both databases)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class AnswerRejected(Exception):
    """A request that must not change anything; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Task:
    token: str  # assignment token the browser answers with
    class_name: str
    image_tokens: tuple[str, ...]  # display order: (left[, right])
    done: int
    total: int
    role: str = "task"  # "catch" or "practice": an attention check (checks.py)


@dataclass(frozen=True)
class Finished:
    completion_code: str  # "" when the rater never got a counted task (no code)
    done: int
    total: int = 0  # what progress counts to: counted tasks plus catch items
    completion_url: str | None = None  # where the browser goes next (Prolific)


@dataclass(frozen=True)
class Entry:
    """A participant's entry: their rater, and whether that rater has finished before (has a
    completion code: a rater who opens the link again to look their code up)."""

    rater_id: int
    finished: bool = False


@dataclass(frozen=True)
class Closed:
    pass


NO_TASK = (404, "no such task for this rater")
ANSWERED = (409, "this task was already answered")
EXPIRED = (409, "this task expired and was given to someone else")
NO_CONSENT = (403, "give your consent on the instructions page before starting")
CLOSED = (403, "this study is closed; thank you for your interest")
NOT_IN_STUDY = (403, "open the study link you were given first")


# -- The statements of the request cycle (see the module docstring), parameters by name. --

RATER_AND_STUDY = (
    select(
        *Study.__table__.columns,
        Rater.answered.label("rater_answered"),
        Rater.participant.label("rater_participant"),
        Rater.consented_at.label("rater_consented_at"),
    )
    .join(Rater, Rater.study_id == Study.id)
    .where(Rater.id == bindparam("rater_id"), Study.public_id == bindparam("public_id"))
)
# the rater's row only: other raters' requests go on in parallel
LOCK_RATER = RATER_AND_STUDY.with_for_update(of=Rater)
_image_a, _image_b = Image.__table__.alias("image_a"), Image.__table__.alias("image_b")
TASK_OF_ITEM = (
    select(Item.class_name, Item.number, _image_a.c.token, _image_b.c.token)
    .join(_image_a, _image_a.c.id == Item.image_a_id)
    .outerjoin(_image_b, _image_b.c.id == Item.image_b_id)
    .where(Item.id == bindparam("item_id"))
)
ACTIVE_ASSIGNMENT = (
    select(Assignment.token, Assignment.item_id, Assignment.left)
    .join(Slot, Slot.id == Assignment.slot_id)
    .where(
        Assignment.rater_id == bindparam("rater_id"),
        Slot.lease_token == Assignment.lease_token,
        Slot.filled.is_(False),
        Slot.lease_expires_at > bindparam("now"),
    )
    .order_by(Assignment.id)
    .limit(1)
)
STUDY_STATUS = select(Study.status).where(Study.id == bindparam("study_id"))
_free = lease_is_free(bindparam("now"))
_candidate = (
    select(Slot.id)
    .where(
        Slot.study_id == bindparam("in_study"),
        Slot.filled.is_(False),
        _free,
        # a closed study hands out nothing (asked here rather than in a statement of its own)
        exists().where(Study.id == Slot.study_id, Study.status == "open"),
        ~exists().where(
            Assignment.rater_id == bindparam("for_rater"), Assignment.item_id == Slot.item_id
        ),
    )
    .order_by(Slot.slot_no, Slot.shuffle)
    .limit(1)
    .with_for_update(skip_locked=True)
)
CLAIM_SLOT = (
    update(Slot)
    .where(Slot.id == _candidate.scalar_subquery(), Slot.filled.is_(False), _free)
    .values(lease_token=bindparam("new_lease"), lease_expires_at=bindparam("expires"))
    .returning(Slot.id, Slot.item_id)
)
# The rater's assignment with this token (parameters not named like the slot's columns: the
# fill below is an UPDATE of the slot, whose parameters must not share a column's name).
_MINE = (
    Assignment.token == bindparam("task"),
    Assignment.rater_id == bindparam("of_rater"),
    Assignment.study_id == bindparam("of_study"),
)
FIND_ASSIGNMENT = (
    select(Assignment.lease_token, Slot.filled, Slot.lease_token.label("slot_lease"))
    .join(Slot, Slot.id == Assignment.slot_id)
    .where(*_MINE)
)
_held = select(Assignment.slot_id, Assignment.lease_token).where(*_MINE)


def _of_answered(column):
    """``column`` of the answered assignment, as a subquery of the fill's RETURNING."""
    return select(column).where(Assignment.token == bindparam("task")).scalar_subquery()


# Fills the slot of the rater's assignment while the rater still holds its lease (the slot's
# lease token is the assignment's) and returns what the answer row needs; nothing when the
# task is not the rater's, was answered, or was given to someone else (FIND_ASSIGNMENT says which).
FILL_SLOT = (
    update(Slot)
    .where(tuple_(Slot.id, Slot.lease_token).in_(_held), Slot.filled.is_(False))
    .values(filled=True, lease_expires_at=None)
    .returning(
        Slot.item_id,
        _of_answered(Assignment.id).label("assignment_id"),
        _of_answered(Assignment.left).label("left"),
        _of_answered(Assignment.expires_at).label("expires_at"),
    )
)
COUNT_ANSWER = (
    update(Rater)
    .where(Rater.id == bindparam("answering_rater"))
    .values(answered=Rater.answered + 1)
    .returning(Rater.answered)
)


# A rater's arrival (``admit``, ``record_consent``). The insert of a new rater does nothing
# when the participant entered before or at the same moment (one per dialect).
RATER_OF_PARTICIPANT = select(Rater.id, Rater.completion_code).where(
    Rater.study_id == bindparam("study_id"), Rater.participant == bindparam("participant")
)
NEW_RATER = {
    "postgresql": postgresql.insert(Rater).on_conflict_do_nothing().returning(Rater.id),
    "sqlite": sqlite.insert(Rater).on_conflict_do_nothing().returning(Rater.id),
}
PLATFORM_OF_RATER = update(Rater).where(Rater.id == bindparam("entering_rater"))
RECORD_CONSENT = (
    update(Rater)
    .where(Rater.id == bindparam("consenting_rater"), Rater.consented_at.is_(None))
    .values(consented_at=bindparam("now"))
)


def _tokens_in_order(token_a: str, token_b: str | None, left: str) -> tuple[str, ...]:
    if token_b is None:
        return (token_a,)
    return (token_a, token_b) if left == "a" else (token_b, token_a)


def admit(
    connection: Connection,
    study_id: int,
    participant: str,
    platform: dict | None,
    is_open: bool,
) -> Entry:
    """The rater of this participant, created on first entry while the study ``is_open``
    (its status read in this transaction); a closed study admits no new raters
    (AnswerRejected 403, nothing stored), though one who entered before may come back.
    ``platform``: rater columns saying where the rater came from (``platforms.rater_columns``),
    stored with the rater (the latest entry wins)."""
    known = {"study_id": study_id, "participant": participant}
    if is_open:  # most entries are first entries: one statement
        new = {**known, **(platform or {}), "created_at": utcnow(), "answered": 0}
        rater_id = connection.scalar(NEW_RATER[connection.dialect.name], new)
        if rater_id is not None:
            return Entry(rater_id)
        # The participant entered before, or at this moment by another request that inserted
        # first (this waited for it to commit): this inserted nothing; use their row.
    known_rater = connection.execute(RATER_OF_PARTICIPANT, known).first()
    if known_rater is None:
        raise AnswerRejected(*CLOSED)
    if platform:  # the columns set are the keys of ``platform``
        connection.execute(PLATFORM_OF_RATER, {"entering_rater": known_rater.id, **platform})
    return Entry(known_rater.id, finished=known_rater.completion_code is not None)


def enter(engine: Engine, study: Study, participant: str, platform: dict | None = None) -> Entry:
    """``admit`` in a transaction of its own, with the study's status read in it."""

    def work(connection: Connection) -> Entry:
        status = connection.scalar(STUDY_STATUS, {"study_id": study.id})
        return admit(connection, study.id, participant, platform, is_open=status == "open")

    return run_transaction(engine, work)


def record_consent(engine: Engine, rater_id: int) -> None:
    run_transaction(
        engine,
        lambda connection: connection.execute(
            RECORD_CONSENT, {"consenting_rater": rater_id, "now": utcnow()}
        ),
    )


def _lock_rater(connection: Connection, public_id: str, rater_id: int):
    """(study, answered, participant) of a rater of the study of link ``public_id`` who gave
    consent, with the rater's row locked; the study is a ``Study`` of no ORM session."""
    row = connection.execute(LOCK_RATER, {"rater_id": rater_id, "public_id": public_id}).first()
    if row is None:
        raise AnswerRejected(*NOT_IN_STUDY)
    if row.rater_consented_at is None:
        raise AnswerRejected(*NO_CONSENT)
    return detached_study(row), row.rater_answered, row.rater_participant


def _task(
    connection: Connection,
    study: Study,
    token: str,
    item_id: int,
    left: str,
    done: int,
    role: str = "task",
) -> Task:
    class_name, _number, token_a, token_b = connection.execute(
        TASK_OF_ITEM, {"item_id": item_id}
    ).one()
    tokens = _tokens_in_order(token_a, token_b, left)
    return Task(token, class_name, tokens, done, study.tasks_per_rater, role)


def _finish(connection: Connection, study: Study, rater_id: int, done: int) -> Finished:
    if done == 0:  # never got a counted task: not finished, no code (may come back later)
        return Finished("", 0)
    # The study's own code (Prolific's per-study code) when it has one, else 12 random hex digits
    code = study.completion_code or secrets.token_hex(6).upper()
    connection.execute(
        update(Rater)
        .where(Rater.id == rater_id, Rater.completion_code.is_(None))
        .values(completion_code=code, finished_at=utcnow())
    )
    return Finished(
        connection.scalar(select(Rater.completion_code).where(Rater.id == rater_id)),
        done,
        study.tasks_per_rater + study.catch_items,
        study.completion_url,
    )


def _next_for_locked_rater(
    connection: Connection,
    study: Study,
    rater_id: int,
    participant: str,
    done: int,
    answered_open_task: bool = False,
) -> Task | Finished | Closed:
    """The rater's open task, else a newly claimed one, else the completion code.

    A rater holds at most one open task (a hand-out is made only when this finds none, under
    the rater's lock), so right after answering their open one (``answered_open_task``: its
    lease was running) there is none to look for. An answer to a task whose lease ran out may
    come after a newer hand-out, which is then the open one."""
    now = utcnow()
    active = (
        None
        if answered_open_task
        else connection.execute(ACTIVE_ASSIGNMENT, {"rater_id": rater_id, "now": now}).first()
    )
    if active is not None:
        return _task(connection, study, active.token, active.item_id, active.left, done)
    if checks.has_checks(study):  # attention checks: practice first, catch items unannounced
        check = checks.next_check(connection, study, rater_id, participant, done, now)
        if check is not None:
            token, item_id, left, role = check
            return _task(connection, study, token, item_id, left, done, role)
    if done >= study.tasks_per_rater:
        return _finish(connection, study, rater_id, done)
    lease, expires = new_token(), now + dt.timedelta(seconds=study.lease_seconds)
    claimed = connection.execute(
        CLAIM_SLOT,
        {
            "in_study": study.id,
            "for_rater": rater_id,
            "now": now,
            "new_lease": lease,
            "expires": expires,
        },
    ).first()
    if claimed is None:
        if not done and connection.scalar(STUDY_STATUS, {"study_id": study.id}) != "open":
            return Closed()
        # nothing left for this rater, or the study closed after they answered some: their code
        return _finish(connection, study, rater_id, done)
    class_name, number, token_a, token_b = connection.execute(
        TASK_OF_ITEM, {"item_id": claimed.item_id}
    ).one()
    token, left = hand_out(
        connection,
        study,
        rater_id=rater_id,
        item_id=claimed.item_id,
        item_number=number,
        slot_id=claimed.id,
        lease=lease,
        participant=participant,
        now=now,
    )
    tokens = _tokens_in_order(token_a, token_b, left)
    return Task(token, class_name, tokens, done, study.tasks_per_rater)


def study_and_next_task(
    engine: Engine, public_id: str, rater_id: int, consenting: bool = False
) -> tuple[Study, Task | Finished | Closed]:
    """(the study of link ``public_id``, the rater's open task in it, else a newly claimed one,
    else their completion code): the task page shows both, from one transaction.
    ``consenting``: the rater has just agreed; their consent is stored first, in it."""

    def work(connection: Connection):
        if consenting:
            connection.execute(RECORD_CONSENT, {"consenting_rater": rater_id, "now": utcnow()})
        study, done, participant = _lock_rater(connection, public_id, rater_id)
        result = _next_for_locked_rater(connection, study, rater_id, participant, done)
        return study, checks.with_progress(connection, study, rater_id, result)

    return run_transaction(engine, work)


def next_task(engine: Engine, public_id: str, rater_id: int) -> Task | Finished | Closed:
    """The rater's open task in the study of link ``public_id``, else a newly claimed one, else
    their completion code."""
    return study_and_next_task(engine, public_id, rater_id)[1]


def parse_answer(kind: str, answer, reason) -> tuple[int | None, str | None, str | None]:
    """Validate what the browser sent: (rating, side, unknown_reason); raises AnswerRejected(400)."""
    if answer == "unknown":
        if reason not in UNKNOWN_REASONS:
            raise AnswerRejected(
                400, f"an unknown answer needs a reason among {', '.join(UNKNOWN_REASONS)}"
            )
        return None, "unknown", reason
    if reason not in (None, ""):
        raise AnswerRejected(400, "a reason is only accepted with an unknown answer")
    if kind == "rating":
        if type(answer) is not int or not 1 <= answer <= 5:
            raise AnswerRejected(400, "a rating must be an integer from 1 to 5")
        return answer, None, None
    if answer not in ("left", "right"):
        raise AnswerRejected(400, "a pairwise answer must be 'left' or 'right'")
    return None, answer, None


def _check_submit(assignment_token, response_ms) -> None:
    """What the browser sent, whatever the study's kind (the answer is checked against it
    with the rater's row locked; a rejected answer rolls back and stores nothing)."""
    if not isinstance(assignment_token, str) or not 10 <= len(assignment_token) <= 40:
        raise AnswerRejected(400, "missing or malformed task id")
    if type(response_ms) is not int or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise AnswerRejected(400, f"response_ms must be an integer from 0 to {MAX_RESPONSE_MS}")


def _store(
    connection: Connection,
    study: Study,
    rater_id: int,
    assignment_token: str,
    parsed,
    response_ms: int,
) -> tuple[int, bool]:
    """Store one validated answer for the locked rater: (the rater's answered count, whether
    the task's lease was still running, so that it was the rater's one open task)."""
    rating, side, unknown_reason = parsed
    now = utcnow()
    mine = {"task": assignment_token, "of_rater": rater_id, "of_study": study.id}
    filled = connection.execute(FILL_SLOT, mine).first()
    if filled is None:  # say why
        found = connection.execute(FIND_ASSIGNMENT, mine).first()
        if found is None:
            raise AnswerRejected(*NO_TASK)
        if found.filled and found.slot_lease == found.lease_token:
            raise AnswerRejected(*ANSWERED)
        raise AnswerRejected(*EXPIRED)
    store_answer(
        connection,
        study,
        assignment_id=filled.assignment_id,
        item_id=filled.item_id,
        rater_id=rater_id,
        left=filled.left,
        rating=rating,
        choice=choice_of(side, filled.left),
        unknown_reason=unknown_reason,
        response_ms=response_ms,
        now=now,
    )
    answered = connection.scalar(COUNT_ANSWER, {"answering_rater": rater_id})
    return answered, filled.expires_at > now


def submit(
    engine: Engine,
    public_id: str,
    rater_id: int,
    assignment_token,
    answer,
    reason,
    response_ms,
    with_next: bool = False,
) -> tuple[int, Task | Finished | Closed | None]:
    """Store one answer of a rater of the study of link ``public_id`` and, ``with_next``, claim
    their next task in the same transaction: (answered count as progress shows it: counted plus
    catch answers, next task or None). Raises AnswerRejected with nothing stored."""
    _check_submit(assignment_token, response_ms)

    def work(connection: Connection):
        study, _, participant = _lock_rater(connection, public_id, rater_id)
        parsed = parse_answer(study.kind, answer, reason)
        done = (
            checks.store_check(
                connection, study, rater_id, assignment_token, parsed, response_ms, utcnow()
            )
            if checks.has_checks(study)
            else None
        )
        answered_open_task = False
        if done is None:
            done, answered_open_task = _store(
                connection, study, rater_id, assignment_token, parsed, response_ms
            )
        following = (
            _next_for_locked_rater(
                connection, study, rater_id, participant, done, answered_open_task
            )
            if with_next
            else None
        )
        shown = (
            checks.shown_done(connection, study, rater_id, done)
            if checks.has_checks(study)
            else done
        )
        return shown, checks.with_progress(connection, study, rater_id, following)

    try:
        return run_transaction(engine, work)
    except IntegrityError:
        # The rater's row lock queues their requests, so this takes a duplicate of this very
        # answer arriving by another path; the transaction stored nothing.
        raise AnswerRejected(*ANSWERED) from None
