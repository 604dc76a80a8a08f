"""Request plumbing shared by the blueprints: database engine, study lookup, rate limits,
security headers and error pages (JSON under ``/api/``, HTML elsewhere; never a traceback)."""

from __future__ import annotations

import time

from flask import current_app, g, jsonify, render_template, request, session
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, TooManyRequests

from study_app import assign
from study_app.db import get_engine, read_session
from study_app.models import Study
from study_app.security import SECURITY_HEADERS

STUDY_CACHE_SECONDS = 5.0
_study_cache: dict[tuple[str, str], tuple[float, Study | None]] = {}


def engine():
    return get_engine(current_app.config["DATABASE_URL"])


def study_by_public_id(public_id: str, fresh: bool = False) -> Study | None:
    """The study for a raters' link (cached for a few seconds per process; with ``fresh`` its
    status, the one thing about a study that changes, is re-read from the database. The hot API
    paths re-read the status inside their own transaction)."""
    if not isinstance(public_id, str) or not 8 <= len(public_id) <= 40:
        return None
    key = (current_app.config["DATABASE_URL"], public_id)
    hit = _study_cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < STUDY_CACHE_SECONDS:
        study = hit[1]
        if not fresh:
            return study
        if study is not None and assign.study_status(engine(), study.id) == study.status:
            return study
    with read_session(engine()) as s:
        study = s.scalar(select(Study).where(Study.public_id == public_id))
        if study is not None:
            s.expunge(study)
    _study_cache[key] = (now, study)
    return study


def _wants_json() -> bool:
    return "/api/" in request.path


TOO_MANY_REQUESTS = "too many requests; slow down and try again in a minute"


def _before_request():
    if request.endpoint == "static":
        return
    rate_limits = current_app.extensions["study_rate_limits"]
    if not rate_limits.hit("ip", request.remote_addr or "-"):
        raise TooManyRequests(TOO_MANY_REQUESTS)
    rater_id = session.get("rater_id")
    if rater_id is not None and _wants_json() and not rate_limits.hit("rater", rater_id):
        raise TooManyRequests(TOO_MANY_REQUESTS)


_SECURITY_HEADER_ITEMS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())
_HSTS = ("strict-transport-security", "Strict-Transport-Security", "max-age=31536000")


def _after_request(response):
    headers = response.headers
    present = {name.lower() for name in headers.keys()}
    for lower, name, value in _SECURITY_HEADER_ITEMS:  # a view's own value wins (setdefault)
        if lower not in present:
            headers.add(name, value)
    if current_app.config.get("HTTPS") and _HSTS[0] not in present:
        headers.add(_HSTS[1], _HSTS[2])
    if request.endpoint != "images.image" and request.endpoint != "static":
        headers["Cache-Control"] = "no-store"
    return response


def _http_error(err: HTTPException):
    message = err.description if isinstance(err.description, str) else err.name
    if isinstance(err, CSRFError):
        message = "the form expired or was not sent by this site; reload the page and try again"
    if _wants_json():
        return jsonify(error=message), err.code
    return render_template("message.html", title=f"{err.code} {err.name}", message=message), err.code


def _unexpected_error(err: Exception):
    current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
    if _wants_json():
        return jsonify(error="internal error; please try again"), 500
    return render_template("message.html", title="Something went wrong", message="Please try again."), 500


def init_app(app) -> None:
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.teardown_appcontext(lambda _exc: g.pop("study", None))
