"""Rater blueprint: entry link, instructions and consent, the task page and its JSON API.

    /s/<public_id>/?PROLIFIC_PID=...   entry (participant id from crowdsourcing URL parameters)
    /s/<public_id>/consent              instructions, example images, consent  (paper Appendix G);
                                        agreeing answers with the task page
    /s/<public_id>/task                 the task page with the first task and static/rater.js in it
    POST /s/<public_id>/api/next        the rater's current task, a new one, or the completion code
    POST /s/<public_id>/api/answer      store one answer, reply with the next task (CSRF token in X-CSRFToken)
    /s/<public_id>/complete             after the last answer: Prolific redirect / MTurk submit form

Crowd platforms (``platforms.py``): Prolific's STUDY_ID / SESSION_ID and MTurk's hitId /
assignmentId / turkSubmitTo are stored with the rater; an MTurk preview
(assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE) shows the instructions and examples and claims nothing.

The browser only ever sees opaque assignment and image ids: which model made an image, or
whether it is real, is never sent. There is no feedback on correctness.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.util import get_remote_address
from sqlalchemy import bindparam, select

from study_app import assign, images, platforms
from study_app.db import run_transaction, session_scope
from study_app.schema import Image, Rater, Source
from study_app.web import engine, find_study, study_by_public_id

bp = Blueprint("rater", __name__, url_prefix="/s/<public_id>")

# URL parameters crowdsourcing platforms append to a study link (Prolific, MTurk, generic).
PARTICIPANT_PARAMS = (
    "PROLIFIC_PID",
    "participant",
    "participant_id",
    "workerId",
    "worker_id",
    "pid",
)
# Read at every rater's arrival: built once (see assign.py).
EXAMPLES = (
    select(Image.token, Image.class_name, Source.is_real, Source.dataset)
    .join(Source, Source.id == Image.source_id)
    .where(Image.study_id == bindparam("study_id"), Image.is_example.is_(True))
    .order_by(Image.id)
)
NO_STUDY = "no such study; check the link you were given"
RATING_LABELS = ("1 – clearly not real", "2", "3", "4", "5 – looks completely real")


def rate_limit_key() -> str:
    """Flask-Limiter key of the per-rater limit: the rater of the session, else the address."""
    rater_id = session.get("rater_id")
    return f"rater-{rater_id}" if rater_id is not None else f"address-{get_remote_address()}"


def _study(public_id: str):
    study = study_by_public_id(public_id)
    if study is None:
        abort(404, NO_STUDY)
    return study


def _rater_id(public_id: str) -> int:
    """The rater of the session, who entered through this link."""
    if session.get("public_id") != public_id or session.get("rater_id") is None:
        abort(403, assign.NOT_IN_STUDY[1])
    return session["rater_id"]


def _checked_participant(participant: str) -> str:
    if not 0 < len(participant) <= platforms.MAX_ID or not platforms.ID_RE.fullmatch(participant):
        abort(400, "participant id: use 1-100 letters, digits or . _ @ : + -")
    return participant


def _begin_session(
    public_id: str, rater_id: int, entry: platforms.PlatformEntry | None = None
) -> None:
    """A fresh session for the rater, who entered through link ``public_id``."""
    session.clear()
    session["public_id"] = public_id
    session["rater_id"] = rater_id
    session["platform"] = entry.platform if entry is not None else None


def _start(study, participant: str) -> assign.Entry:
    """Create or find the rater of the participant-id form and start a fresh session for it."""
    try:
        entered = assign.enter(engine(), study, _checked_participant(participant))
    except assign.AnswerRejected as err:  # a closed study admits no new raters
        abort(err.status, err.message)
    _begin_session(study.public_id, entered.rater_id)
    return entered


def _link_participant() -> tuple[str, platforms.PlatformEntry] | None:
    """(participant id, platform entry) of a crowd platform's link, or None."""
    for name in PARTICIPANT_PARAMS:
        if request.args.get(name):
            hosts = current_app.extensions["study_mturk_hosts"]  # parsed once (web.py)
            try:
                entry = platforms.entry_from_args(request.args, hosts)
            except platforms.PlatformError as err:
                abort(400, str(err))
            return _checked_participant(request.args[name].strip()), entry
    return None


def _arrive(public_id: str, participant: str, entry: platforms.PlatformEntry):
    """(study, its example images, the rater's ``assign.Entry``) for a participant arriving by a
    crowd platform's link, in one transaction with finding or creating their rater (and where
    they came from); starts a fresh session for the rater."""
    columns = platforms.rater_columns(entry)

    def work(connection):
        study, examples = _read_study_and_examples(connection, public_id)
        if study is None:
            return None
        is_open = study.status == "open"
        return study, examples, assign.admit(connection, study.id, participant, columns, is_open)

    try:
        found = run_transaction(engine(), work)
    except assign.AnswerRejected as err:  # a closed study admits no new raters
        abort(err.status, err.message)
    if found is None:
        abort(404, NO_STUDY)
    study, examples, entered = found
    _begin_session(study.public_id, entered.rater_id, entry)
    return study, examples, entered


def _consent_page(study, examples, preview: bool = False):
    """The instructions, the example images (two real and two generated at most) and, unless
    an MTurk preview, the consent form."""
    real = [r for r in examples if r.is_real][:2]
    generated = [r for r in examples if not r.is_real][:2]
    return render_template(
        "consent.html", study=study, real=real, generated=generated, preview=preview
    )


def _read_study_and_examples(connection, public_id: str):
    """(study of the link or None, its example images) on an open connection."""
    study = find_study(connection, public_id)
    if study is None:
        return None, []
    return study, connection.execute(EXAMPLES, {"study_id": study.id}).all()


def _study_and_examples(public_id: str):
    """(study, its example images) in one read: every rater's arrival asks both."""
    study, examples = run_transaction(
        engine(), lambda connection: _read_study_and_examples(connection, public_id), read_only=True
    )
    if study is None:
        abort(404, NO_STUDY)
    return study, examples


@bp.route("/", methods=["GET", "POST"])
def entry(public_id: str):
    if request.method == "GET" and not platforms.is_preview(request.args):
        arriving = _link_participant()
        if arriving is not None:
            # A crowd platform's link: the instructions and consent form in this response (no
            # redirect: one round trip less for every arriving rater; a reload enters again,
            # which finds the same rater)
            study, examples, entered = _arrive(public_id, *arriving)
            if entered.finished:  # back to look their code up: the completion step again
                return redirect(url_for("rater.complete", public_id=study.public_id))
            return _consent_page(study, examples)
    study, examples = _study_and_examples(public_id)
    if request.method == "POST":  # the participant-id form: then the instructions page
        entered = _start(study, str(request.form.get("participant", "")).strip())
        step = "rater.complete" if entered.finished else "rater.consent"
        return redirect(url_for(step, public_id=study.public_id))
    if study.status != "open":  # also in an MTurk preview: no worker should accept it now
        abort(403, assign.CLOSED[1])
    if platforms.is_preview(request.args):  # MTurk preview: instructions and examples only
        return _consent_page(study, examples, preview=True)
    return render_template("entry.html", study=study)


@bp.route("/consent", methods=["GET", "POST"])
def consent(public_id: str):
    rater_id = _rater_id(public_id)
    if request.method == "POST":
        if request.form.get("agree") != "yes":
            abort(400, "tick the box to agree before starting")
        # The task page itself, not a redirect to it: one round trip less before a rater's
        # first task. The page's script puts the task page's own URL in the address bar
        # (history.replaceState), so a reload asks for that page, not for this form again.
        return _task_page(public_id, rater_id, consenting=True)
    return _consent_page(*_study_and_examples(public_id))


@bp.route("/task")
def task(public_id: str):
    """The task page with the rater's first task in it (no API request before the first
    images load); a reload shows the same open task."""
    return _task_page(public_id, _rater_id(public_id))


def _task_page(public_id: str, rater_id: int, consenting: bool = False):
    """The task page of the rater with their open or first task; ``consenting``: they have
    just agreed (stored in the same transaction)."""
    try:
        study, first = assign.study_and_next_task(engine(), public_id, rater_id, consenting)
    except assign.AnswerRejected as err:
        if (err.status, err.message) == assign.NO_CONSENT:
            return redirect(url_for("rater.consent", public_id=public_id))
        abort(404, NO_STUDY)
    return render_template(
        "task.html",
        study=study,
        first_task=_task_json(first, public_id),
        rating_labels=RATING_LABELS,
        reasons=assign.UNKNOWN_REASONS,
    )


def _task_json(result, public_id: str):
    if isinstance(result, assign.Task):
        return {
            "state": "task",
            "task": result.token,
            "label": result.class_name,
            "images": [images.rater_image_url(t, session["rater_id"]) for t in result.image_tokens],
            "done": result.done,
            "total": result.total,
            # practice items are labelled as such; catch items look like any task (unannounced)
            "practice": result.role == "practice",
        }
    if isinstance(result, assign.Finished):
        if result.done == 0:
            return {"state": "unavailable", "done": 0}
        finished = {
            "state": "finished",
            "code": result.completion_code,
            # the same count as the tasks' progress: counted plus catch answers
            "done": result.done,
            "total": result.total,
        }
        if result.completion_url or session.get("platform") == "mturk":  # the browser goes on
            finished["complete"] = url_for("rater.complete", public_id=public_id)
        return finished
    return {"state": "closed"}


@bp.post("/api/next")
def api_next(public_id: str):
    rater_id = _rater_id(public_id)  # the study is checked with the rater's row
    try:
        result = assign.next_task(engine(), public_id, rater_id)
    except assign.AnswerRejected as err:
        return jsonify(error=err.message), err.status
    return jsonify(_task_json(result, public_id))


@bp.post("/api/answer")
def api_answer(public_id: str):
    rater_id = _rater_id(public_id)  # the study is checked with the rater's row
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # deeply nested JSON (the decoder recurses once per level)
        body = None
    if not isinstance(body, dict):
        abort(400, "expected a JSON object")
    # The next task comes in the same response and from the same transaction.
    try:
        done, following = assign.submit(
            engine(),
            public_id,
            rater_id,
            body.get("task"),
            body.get("answer"),
            body.get("reason"),
            body.get("response_ms"),
            with_next=True,
        )
    except assign.AnswerRejected as err:
        return jsonify(error=err.message), err.status
    return jsonify(stored=True, done=done, next=_task_json(following, public_id))


@bp.route("/complete")
def complete(public_id: str):
    """Once the rater's last answer is stored (their completion code is set): the study's
    completion URL (Prolific), or the form that submits the MTurk assignment, or the code."""
    study = _study(public_id)
    rater_id = _rater_id(public_id)
    with session_scope(engine(), read_only=True) as s:
        rater = s.execute(
            select(
                Rater.completion_code, Rater.platform, Rater.platform_session, Rater.submit_to
            ).where(Rater.id == rater_id)
        ).one()
    if rater.completion_code is None:
        abort(403, "answer all your tasks first; the completion step comes after the last answer")
    if rater.platform == "mturk" and rater.submit_to and rater.platform_session:
        action = platforms.external_submit_url(rater.submit_to)
        response = current_app.make_response(
            render_template(
                "mturk_submit.html",
                study=study,
                action=action,
                assignment_id=rater.platform_session,
                code=rater.completion_code,
            )
        )
        # this one form may post to MTurk (the app's policy allows only itself otherwise)
        from study_app.security import content_security_policy

        response.headers["Content-Security-Policy"] = content_security_policy(
            current_app.extensions["study_page_assets"],
            current_app.extensions["study_mturk_hosts"],
            [rater.submit_to],
        )
        return response
    if study.completion_url:
        return redirect(study.completion_url)
    return render_template(
        "message.html",
        title="Thank you!",
        message=f"All your answers are stored. Your completion code is {rater.completion_code}.",
    )
