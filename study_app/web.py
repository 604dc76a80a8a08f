"""Request plumbing shared by the blueprints: the app's database engine, study lookup, security
headers, ``GET /healthz`` and error pages (JSON under ``/api/``, HTML elsewhere; never a
traceback)."""

from __future__ import annotations

import time

from flask import current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from study_app.db import head_revision, run_transaction
from study_app.errors import DatabaseError
from study_app.page_assets import load_page_assets
from study_app.schema import Study, detached_study
from study_app.security import HSTS, SECURITY_HEADERS, content_security_policy

TOO_MANY_REQUESTS = "too many requests; slow down and try again in a minute"
UNAVAILABLE = "the study is unavailable for a moment; please try again in a minute"
RETRY_AFTER_UNAVAILABLE = 30  # seconds: a database restart or failover
# Read on every rater request: built once (see assign.py), all of the study's columns.
STUDY_BY_PUBLIC_ID = select(Study.__table__).where(
    Study.__table__.c.public_id == bindparam("public_id")
)


def engine() -> Engine:
    return current_app.extensions["study_engine"]


def find_study(connection: Connection, public_id: str) -> Study | None:
    """The study of a raters' link, as a ``Study`` object that belongs to no ORM session (a
    Core read costs less than a session), on a connection the caller has open."""
    if not isinstance(public_id, str) or not 8 <= len(public_id) <= 40:
        return None
    row = connection.execute(STUDY_BY_PUBLIC_ID, {"public_id": public_id}).first()
    return None if row is None else detached_study(row)


def study_by_public_id(public_id: str) -> Study | None:
    """The study of a raters' link, read afresh for each request (its status may change)."""
    return run_transaction(
        engine(), lambda connection: find_study(connection, public_id), read_only=True
    )


def healthz():
    """200 when the database answers and is at the schema this code needs, else 503."""
    from study_app.db import current_revision

    try:
        revision = current_revision(engine())
    except (DatabaseError, SQLAlchemyError) as err:
        # the details (host, user, database name) go to the log, not to whoever asks
        current_app.logger.warning("healthz: %s", str(err).splitlines()[0])
        return jsonify(status="unavailable", reason="the database cannot be reached"), 503
    head = current_app.extensions["study_schema_head"]
    if revision != head:
        return jsonify(
            status="unavailable", reason=f"schema {revision}, this code needs {head}"
        ), 503
    return jsonify(status="ok", schema=revision)


def _wants_json() -> bool:
    return "/api/" in request.path or request.path == "/healthz"


def _after_request(response):
    # a rater's pages may be shown in a crowd platform's frame; the admin's never
    framed = request.blueprint in ("rater", "images")
    headers = current_app.extensions["study_rater_headers" if framed else "study_admin_headers"]
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    if current_app.config["HTTPS"]:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if request.endpoint != "images.image":
        response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(err: HTTPException):
    message = err.description if isinstance(err.description, str) else err.name
    if isinstance(err, CSRFError):
        message = "the form expired or was not sent by this site; reload the page and try again"
    if err.code == 429:
        message = TOO_MANY_REQUESTS
    response = err.get_response()  # keeps the headers of the error (Allow on 405, ...)
    if _wants_json():
        body = jsonify(error=message)
    else:
        body = current_app.make_response(
            render_template("message.html", title=f"{err.code} {err.name}", message=message)
        )
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            body.headers[name] = value
    body.status_code = err.code
    if err.code == 429:
        body.headers["Retry-After"] = str(_seconds_to_reset())
    return body


def _seconds_to_reset() -> int:
    """Whole seconds until the limit this request broke lets it through again (at least 1)."""
    limit = current_app.extensions["study_limiter"].current_limit
    if limit is None:  # a 429 raised by the app itself, not by a limit
        return 60
    return max(1, int(limit.reset_at - time.time()))


def _database_unavailable(err: Exception):
    """The database could not be reached, or was busy past its timeout (a restart, a
    failover, a SQLite lock held too long): nothing of the request was stored (its transaction
    was rolled back), so the rater can simply try again; 503 with Retry-After, not a 500."""
    current_app.logger.warning(
        "database unavailable on %s %s: %s", request.method, request.path, str(err).splitlines()[0]
    )
    if _wants_json():
        response = jsonify(error=UNAVAILABLE)
    else:
        response = current_app.make_response(
            render_template("message.html", title="Please try again", message=UNAVAILABLE)
        )
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return response


def _unexpected_error(err: Exception):
    current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
    if _wants_json():
        return jsonify(error="internal error; please try again"), 500
    return render_template(
        "message.html", title="Something went wrong", message="Please try again."
    ), 500


def init_app(app) -> None:
    from study_app.platforms import allowed_hosts

    # the stylesheet, script and icon go inside the pages (page_assets.py), read once
    assets = load_page_assets()
    app.extensions["study_page_assets"] = assets
    app.add_template_global(assets, "page_assets")
    # MTurk's origins (its sites by default), read once: an entry link's turkSubmitTo must be
    # one of them, and they may show a rater's pages in a frame
    mturk_hosts = tuple(sorted(allowed_hosts(app.config["MTURK_SUBMIT_HOSTS"])))
    app.extensions["study_mturk_hosts"] = mturk_hosts
    app.extensions["study_rater_headers"] = {
        **{k: v for k, v in SECURITY_HEADERS.items() if k != "X-Frame-Options"},
        "Content-Security-Policy": content_security_policy(assets, frame_ancestors=mturk_hosts),
    }
    app.extensions["study_admin_headers"] = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(assets),
    }
    # the schema this code needs, read from the migration scripts once (~13 ms of parsing): a
    # load balancer asks /healthz every few seconds, and the code cannot change under a worker
    app.extensions["study_schema_head"] = head_revision()
    app.add_url_rule("/healthz", "healthz", healthz)
    app.after_request(_after_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(InterfaceError, _database_unavailable)
    app.register_error_handler(Exception, _unexpected_error)
