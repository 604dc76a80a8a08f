"""Handing out items to raters and storing their answers, race-free on SQLite and PostgreSQL.

Invariants (paper Appendix G: "each image was rated 3 times by different individuals"):
exactly k answers per item from k distinct raters, a rater never sees an item twice, items
fill evenly, unanswered leases return to the pool, a repeated submit stores nothing.

How (see also the diagram in ``models.py``):

* **Claim** = one guarded statement. ``UPDATE slot SET lease=... WHERE id = (SELECT id FROM
  slot WHERE free AND item not yet given to this rater ORDER BY slot_no, shuffle LIMIT 1
  [FOR UPDATE SKIP LOCKED]) AND free RETURNING item_id``. The outer ``AND free`` re-checks the
  row after PostgreSQL's row lock (READ COMMITTED re-evaluates it on the newest version), so
  two raters can never both win one slot; on SQLite the statement runs inside
  ``BEGIN IMMEDIATE`` and writers are serialised. ``ORDER BY slot_no`` hands out every item's
  first slot before any item's second: even filling. An expired lease counts as free.
* The hand-out row ``assignment`` carries ``UNIQUE(item_id, rater_id)``; the rater's own row
  is locked first (``SELECT ... FOR UPDATE``) so one rater's parallel requests queue up.
* **Submit** fills the slot only ``WHERE lease_token = <the rater's> AND NOT filled``; the
  answer row has ``UNIQUE(assignment_id)`` and ``UNIQUE(item_id, rater_id)``.
* On SQLite the statements run from Python in one ``BEGIN IMMEDIATE`` transaction; on
  PostgreSQL the same statements run inside the database, in the functions
  ``hvqeval_answer`` and ``hvqeval_next_task`` (migration 0002), one call per request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from study_app.db import driver_statement, driver_transaction
from study_app.models import Study

UNKNOWN_REASONS = ("image-failed", "cannot-decide", "other")
MAX_RESPONSE_MS = 24 * 3600 * 1000
CLAIM_RETRIES = 5
_SYSTEM_RANDOM = random.SystemRandom()


def utcnow() -> dt.datetime:
    """Naive UTC (the schema stores UTC without a zone on both databases)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_token() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits


class AnswerRejected(Exception):
    """A submit that must not be stored; ``status`` is the HTTP status to answer with."""

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


@dataclass(frozen=True)
class Finished:
    completion_code: str
    done: int


@dataclass(frozen=True)
class Closed:
    pass


def enter(engine: Engine, study_id: int, participant: str) -> int:
    """The rater id for this participant of this study, created on first entry (race-free)."""
    params = {"study": study_id, "participant": participant}
    if engine.dialect.name == "postgresql":
        # One statement: insert, or find the row that is there. Its snapshot cannot see a row
        # that a concurrent first entry of the same participant committed meanwhile; the next
        # statement can.
        for _attempt in range(CLAIM_RETRIES):
            with _statement(engine) as cur:
                row = cur.one(_ENTER_PG, {**params, "now": utcnow()})
            if row is not None:
                return row[0]
        raise AnswerRejected(503, "too many parallel entries for this participant; try again")
    with _transaction(engine) as cur:
        cur.run(_ENTER, {**params, "now": cur.time(utcnow())})
        return cur.one(_RATER_ID, params)[0]


def record_consent(engine: Engine, rater_id: int) -> None:
    with _statement(engine) as cur:
        cur.run(_CONSENT, {"rater": rater_id, "now": cur.time(utcnow())})


# The hot paths run prebuilt SQL straight on the driver's cursor (no per-call statement
# building): on SQLite a few statements inside one BEGIN IMMEDIATE transaction, on PostgreSQL
# one call of a function of migration 0002 in autocommit, i.e. one round trip per request
# (each round trip gives up the GIL and queues to get it back; docs/BENCHMARKS.md).
_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)")


class _Sql:
    """One statement in both drivers' parameter styles (sqlite3 ``:name``, psycopg ``%(name)s``)."""

    def __init__(self, sql: str):
        self.sqlite = sql
        self.postgresql = _PARAM.sub(r"%(\1)s", sql)


@contextlib.contextmanager
def _transaction(engine: Engine, write: bool = True):
    with driver_transaction(engine, write) as cursor:
        yield _Cursor(engine.dialect.name, cursor)


@contextlib.contextmanager
def _statement(engine: Engine, write: bool = True):
    """For a single statement that is a whole transaction (one round trip on PostgreSQL)."""
    with driver_statement(engine, write) as cursor:
        yield _Cursor(engine.dialect.name, cursor)


def study_status(engine: Engine, study_id: int) -> str | None:
    """The study's status as stored now ("open", "closed"; None if there is no such study)."""
    with _statement(engine, write=False) as cur:
        row = cur.one(_STATUS, {"study": study_id})
    return None if row is None else row[0]


class _Cursor:
    """The driver cursor of a transaction; timestamps go in as SQLAlchemy stores them."""

    def __init__(self, dialect: str, cursor):
        self.dialect = dialect
        self.cursor = cursor

    def time(self, value: dt.datetime):
        # SQLAlchemy's SQLite DateTime format, so ORM reads and these writes agree.
        # (isoformat with microseconds is strftime("%Y-%m-%d %H:%M:%S.%f"), several times faster)
        return value.isoformat(" ", "microseconds") if self.dialect == "sqlite" else value

    def run(self, stmt: _Sql, params: dict):
        self.cursor.execute(getattr(stmt, self.dialect), params)
        return self.cursor

    def one(self, stmt: _Sql, params: dict):
        return self.run(stmt, params).fetchone()


# SQLite runs these statements from Python inside BEGIN IMMEDIATE (writers are serialised, so
# the claim needs no row lock); PostgreSQL runs the same statements inside the functions of
# migration 0002 (row lock on the rater, FOR UPDATE SKIP LOCKED in the claim).
_LOCK_RATER = _Sql("SELECT answered FROM rater WHERE id = :rater")
_ACTIVE = _Sql(
    'SELECT a.token, a.item_id, a."left" FROM assignment a JOIN slot s ON s.id = a.slot_id '
    "WHERE a.rater_id = :rater AND s.lease_token = a.lease_token AND s.filled = false "
    "AND s.lease_expires_at > :now ORDER BY a.id LIMIT 1"
)
_CLAIM = _Sql(
    "UPDATE slot SET lease_token = :lease, lease_expires_at = :expires "
    "WHERE id = (SELECT s.id FROM slot s "
    "  WHERE s.study_id = :study AND s.filled = false "
    "  AND (s.lease_expires_at IS NULL OR s.lease_expires_at < :now) "
    "  AND NOT EXISTS (SELECT 1 FROM assignment a WHERE a.rater_id = :rater AND a.item_id = s.item_id) "
    "  AND EXISTS (SELECT 1 FROM study WHERE id = :study AND status = 'open') "
    "  ORDER BY s.slot_no, s.shuffle LIMIT 1) "
    "AND filled = false AND (lease_expires_at IS NULL OR lease_expires_at < :now) "
    "RETURNING id, item_id"
)
_INSERT_ASSIGNMENT = _Sql(
    'INSERT INTO assignment (study_id, token, item_id, rater_id, slot_id, lease_token, "left", issued_at, expires_at) '
    "VALUES (:study, :token, :item, :rater, :slot, :lease, :left, :now, :expires)"
)
_ITEM = _Sql(
    "SELECT i.class_name, ia.token, ib.token FROM item i JOIN image ia ON ia.id = i.image_a_id "
    "LEFT JOIN image ib ON ib.id = i.image_b_id WHERE i.id = :item"
)
_STATUS = _Sql("SELECT status FROM study WHERE id = :study")
_FINISH = _Sql(
    "UPDATE rater SET completion_code = :code, finished_at = :now WHERE id = :rater AND completion_code IS NULL"
)
_CODE = _Sql("SELECT completion_code FROM rater WHERE id = :rater")
_FIND_ASSIGNMENT = _Sql(
    'SELECT a.id, a.item_id, a.slot_id, a.lease_token, a."left", s.filled, s.lease_token '
    "FROM assignment a JOIN slot s ON s.id = a.slot_id "
    "WHERE a.token = :token AND a.rater_id = :rater AND a.study_id = :study"
)
_FILL_SLOT = _Sql(
    "UPDATE slot SET filled = true, lease_expires_at = NULL WHERE id = :slot AND lease_token = :lease AND filled = false"
)
_INSERT_ANSWER_SQL = (
    'INSERT INTO answer (study_id, assignment_id, item_id, rater_id, "left", rating, choice, unknown_reason, '
    "response_ms, created_at) VALUES (:study, :assignment, :item, :rater, :left, :rating, :choice, :reason, :ms, :now)"
)
_INSERT_ANSWER = _Sql(_INSERT_ANSWER_SQL)
_ENTER = _Sql(
    "INSERT INTO rater (study_id, participant, created_at, answered) VALUES (:study, :participant, :now, 0) "
    "ON CONFLICT (study_id, participant) DO NOTHING"
)
_RATER_ID = _Sql("SELECT id FROM rater WHERE study_id = :study AND participant = :participant")
_ENTER_PG = _Sql(
    "WITH entered AS (INSERT INTO rater (study_id, participant, created_at, answered) "
    "VALUES (:study, :participant, :now, 0) ON CONFLICT (study_id, participant) DO NOTHING RETURNING id) "
    "SELECT id FROM entered UNION ALL "
    "SELECT id FROM rater WHERE study_id = :study AND participant = :participant LIMIT 1"
)
# PostgreSQL: the whole of next_task / submit(_and_next) in one statement, by the functions of
# migration 0002 (the same statements as below, run inside the database: one round trip).
_NEXT_TASK_PG = _Sql(
    "SELECT o_state, o_done, o_task, o_class_name, o_token_a, o_token_b, o_left, o_code FROM hvqeval_next_task("
    ":study, :rater, NULL, :now, :lease, :token, :left, :expires, :tasks, :code)"
)
_ANSWER_PG = _Sql(
    "SELECT o_outcome, o_state, o_done, o_task, o_class_name, o_token_a, o_token_b, o_left, o_code FROM hvqeval_answer("
    ":study, :rater, :assignment, :rating, :side, :reason, :ms, :now, :with_next, "
    ":lease, :token, :left, :expires, :tasks, :code)"
)
# Why a submit stores nothing, by the outcome names of hvqeval_answer (the SQLite path raises
# the same).
_REJECTIONS = {
    "no-task": (404, "no such task for this rater"),
    "answered": (409, "this task was already answered"),
    "expired": (409, "this task expired and was given to someone else"),
}
_CONSENT = _Sql("UPDATE rater SET consented_at = :now WHERE id = :rater AND consented_at IS NULL")
_COUNT_ANSWER_SQL = "UPDATE rater SET answered = answered + 1 WHERE id = :rater RETURNING answered"
_COUNT_ANSWER = _Sql(_COUNT_ANSWER_SQL)


def _integrity_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    return (IntegrityError, engine.dialect.dbapi.IntegrityError)


def _task(cur: _Cursor, study: Study, token: str, item_id: int, left: str, done: int) -> Task:
    return _described(study, token, cur.one(_ITEM, {"item": item_id}), left, done)


def _described(study: Study, token: str, item_row, left: str, done: int) -> Task:
    class_name, token_a, token_b = item_row
    tokens = (token_a,) if token_b is None else ((token_a, token_b) if left == "a" else (token_b, token_a))
    return Task(token, class_name, tokens, done, study.tasks_per_rater)


def _completion_code() -> str:
    return secrets.token_hex(6).upper()  # 12 hex digits, as raters type them into the platform


def _side_of_a(study: Study, rng) -> str:
    """Where image A of a new showing goes: random per showing in pairwise studies."""
    return "a" if study.kind == "rating" else (rng or _SYSTEM_RANDOM).choice("ab")


def _lease_end(study: Study, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=study.lease_seconds)


def _finish(cur: _Cursor, rater_id: int, now: dt.datetime, done: int) -> Finished:
    cur.run(_FINISH, {"code": _completion_code(), "now": cur.time(now), "rater": rater_id})
    return Finished(cur.one(_CODE, {"rater": rater_id})[0], done)


def _next_locked(cur: _Cursor, study: Study, rater_id: int, done: int, rng) -> Task | Finished | Closed:
    """``next_task`` inside a SQLite write transaction (``done``: the rater's answered count)."""
    now = utcnow()
    active = cur.one(_ACTIVE, {"rater": rater_id, "now": cur.time(now)})
    if active is not None:
        return _task(cur, study, active[0], active[1], active[2], done)
    if done >= study.tasks_per_rater:
        return _finish(cur, rater_id, now, done)
    lease, token = new_token(), new_token()
    expires = _lease_end(study, now)
    left = _side_of_a(study, rng)
    params = {"lease": lease, "expires": cur.time(expires), "study": study.id, "now": cur.time(now), "rater": rater_id}
    claimed = cur.one(_CLAIM, params)
    if claimed is None:
        if cur.one(_STATUS, {"study": study.id})[0] != "open":
            # No new tasks; whoever answered something gets their code.
            return _finish(cur, rater_id, now, done) if done else Closed()
        return _finish(cur, rater_id, now, done)
    slot_id, item_id = claimed
    cur.run(_INSERT_ASSIGNMENT, {"study": study.id, "token": token, "item": item_id, "rater": rater_id,
                                 "slot": slot_id, "lease": lease, "left": left, "now": cur.time(now),
                                 "expires": cur.time(expires)})
    return _task(cur, study, token, item_id, left, done)


def _pg_next_params(study: Study, rater_id: int, rng) -> dict:
    """What a claim on PostgreSQL may use: fresh lease and assignment tokens, the side of image
    A, the lease's end and a completion code (each used only if that step happens)."""
    now = utcnow()
    return {"study": study.id, "rater": rater_id, "now": now, "lease": new_token(), "token": new_token(),
            "left": _side_of_a(study, rng), "expires": _lease_end(study, now), "tasks": study.tasks_per_rater,
            "code": _completion_code()}


def _pg_next(study: Study, row) -> Task | Finished | Closed:
    """A row (state, done, task, class_name, token_a, token_b, left, code) of the functions."""
    state, done, token, class_name, token_a, token_b, left, code = row
    if state == "task":
        return _described(study, token, (class_name, token_a, token_b), left, done)
    if state == "finished":
        return Finished(code, done)
    return Closed()


def _pg_answer(engine: Engine, study: Study, rater_id: int, assignment_token: str, parsed, response_ms: int,
               rng, with_next: bool) -> tuple[int, Task | Finished | Closed | None]:
    """Store an answer (and claim the next task) on PostgreSQL in one statement."""
    rating, side, unknown_reason = parsed
    params = _pg_next_params(study, rater_id, rng)
    params.update(assignment=assignment_token, rating=rating, side=side, reason=unknown_reason, ms=response_ms,
                  with_next=with_next)
    with _statement(engine) as cur:
        row = cur.one(_ANSWER_PG, params)
    outcome, done = row[0], row[2]
    if outcome != "stored":
        raise AnswerRejected(*_REJECTIONS[outcome])
    return done, (_pg_next(study, row[1:]) if with_next else None)  # row[1:] as in _NEXT_TASK_PG


def next_task(engine: Engine, study: Study, rater_id: int, rng: random.Random | None = None) -> Task | Finished | Closed:
    """The rater's open task, else a newly claimed one, else their completion code."""
    for _attempt in range(CLAIM_RETRIES):
        try:
            if engine.dialect.name == "postgresql":
                with _statement(engine) as cur:
                    return _pg_next(study, cur.run(_NEXT_TASK_PG, _pg_next_params(study, rater_id, rng)).fetchone())
            with _transaction(engine) as cur:
                done = cur.one(_LOCK_RATER, {"rater": rater_id})[0]
                return _next_locked(cur, study, rater_id, done, rng)
        except _integrity_errors(engine):
            continue  # lost a race on UNIQUE(item, rater); the whole claim was rolled back
    raise AnswerRejected(503, "too many parallel requests for this rater; try again")


def parse_answer(kind: str, answer, reason) -> tuple[int | None, str | None, str | None]:
    """Validate what the browser sent: (rating, side, unknown_reason); raises AnswerRejected(400)."""
    if answer == "unknown":
        if reason not in UNKNOWN_REASONS:
            raise AnswerRejected(400, f"an unknown answer needs a reason among {', '.join(UNKNOWN_REASONS)}")
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


def _check_submit(study: Study, assignment_token, answer, reason, response_ms):
    if not isinstance(assignment_token, str) or not 10 <= len(assignment_token) <= 40:
        raise AnswerRejected(400, "missing or malformed task id")
    if type(response_ms) is not int or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise AnswerRejected(400, f"response_ms must be an integer from 0 to {MAX_RESPONSE_MS}")
    return parse_answer(study.kind, answer, reason)


def _store(cur: _Cursor, study: Study, rater_id: int, assignment_token: str, parsed, response_ms: int) -> int:
    """Store one validated answer in the open SQLite write transaction; returns the rater's
    answered count."""
    rating, side, unknown_reason = parsed
    find = {"token": assignment_token, "rater": rater_id, "study": study.id}
    row = cur.one(_FIND_ASSIGNMENT, find)
    if row is None:
        raise AnswerRejected(*_REJECTIONS["no-task"])
    assignment_id, item_id, slot_id, lease, left, filled, slot_lease = row
    if filled and slot_lease == lease:
        raise AnswerRejected(*_REJECTIONS["answered"])  # (nothing was changed)
    if cur.run(_FILL_SLOT, {"slot": slot_id, "lease": lease}).rowcount != 1:
        raise AnswerRejected(*_REJECTIONS["expired"])
    if side == "left":
        choice = left
    elif side == "right":
        choice = "b" if left == "a" else "a"
    else:
        choice = side  # None for ratings, "unknown"
    params = {"study": study.id, "assignment": assignment_id, "item": item_id, "rater": rater_id, "left": left,
              "rating": rating, "choice": choice, "reason": unknown_reason, "ms": response_ms, "now": cur.time(utcnow())}
    cur.run(_INSERT_ANSWER, params)
    return cur.one(_COUNT_ANSWER, {"rater": rater_id})[0]


def submit(engine: Engine, study: Study, rater_id: int, assignment_token, answer, reason, response_ms) -> int:
    """Store one answer; returns the rater's answered count. Raises AnswerRejected (nothing stored)."""
    parsed = _check_submit(study, assignment_token, answer, reason, response_ms)
    try:
        if engine.dialect.name == "postgresql":
            return _pg_answer(engine, study, rater_id, assignment_token, parsed, response_ms, None, False)[0]
        with _transaction(engine) as cur:
            return _store(cur, study, rater_id, assignment_token, parsed, response_ms)
    except _integrity_errors(engine):
        # Only reachable through a concurrent duplicate of this very answer: nothing stored twice.
        raise AnswerRejected(*_REJECTIONS["answered"]) from None


def submit_and_next(engine: Engine, study: Study, rater_id: int, assignment_token, answer, reason, response_ms,
                    rng: random.Random | None = None) -> tuple[int, Task | Finished | Closed | None]:
    """``submit`` then ``next_task`` in one transaction (one commit, one pool checkout; the
    rater's row lock taken by the submit covers the claim): (answered count, next task).

    Raises AnswerRejected exactly when ``submit`` would (nothing stored). If the combined
    transaction hits a unique constraint, nothing of it was stored and the two steps run
    separately, as ``submit`` and ``next_task`` do; the next task is None if that claim fails.
    """
    parsed = _check_submit(study, assignment_token, answer, reason, response_ms)
    try:
        if engine.dialect.name == "postgresql":
            return _pg_answer(engine, study, rater_id, assignment_token, parsed, response_ms, rng, True)
        with _transaction(engine) as cur:
            done = _store(cur, study, rater_id, assignment_token, parsed, response_ms)
            return done, _next_locked(cur, study, rater_id, done, rng)
    except _integrity_errors(engine):
        pass  # rolled back as a whole: a concurrent duplicate of this answer, or a lost claim race
    done = submit(engine, study, rater_id, assignment_token, answer, reason, response_ms)
    try:
        return done, next_task(engine, study, rater_id, rng)
    except AnswerRejected:
        return done, None
