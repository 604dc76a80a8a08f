"""Security plumbing of the web app: response headers, rate limits, secret key and admin password.

Rate limits are fixed windows counted in the memory of each server process: with N
gunicorn workers a client can reach at most N times the limit. They exist to stop a runaway
script or a stuck key from flooding the study, not as a defence against a botnet (put a
reverse proxy in front for that).
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time

from flask import current_app, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature
from werkzeug.security import check_password_hash, generate_password_hash

from study_app.errors import ConfigurationError

# Images and scripts only from this server; nothing may frame the pages (click-jacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SESSION_CACHE_SIZE = 20_000
_IMMUTABLE = (str, int, float, bool, type(None), bytes)


class VerifiedCookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, remembering each cookie whose signature checked out.

    A rater sends the same session cookie with every answer; checking its HMAC and decoding it
    again each time is a good part of a request's CPU. The cookie value determines its
    contents, so a remembered cookie yields exactly what a fresh check would, as long as it is
    not older than the session lifetime (checked on every use with the signing time, as
    itsdangerous does). Only sessions of plain values are remembered, and each request gets
    its own copy. One instance per app (the signing keys are the app's).
    """

    def __init__(self):
        self._verified: dict[str, tuple[dict, int]] = {}

    def open_session(self, app, request):
        val = request.cookies.get(self.get_cookie_name(app))
        if not val:
            return super().open_session(app, request)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        hit = self._verified.get(val)
        if hit is not None and 0 <= int(time.time()) - hit[1] <= max_age:
            return self.session_class(hit[0])
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        try:
            data, signed_at = serializer.loads(val, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(isinstance(v, _IMMUTABLE) for v in data.values()):
            if len(self._verified) >= SESSION_CACHE_SIZE:
                self._verified.clear()
            self._verified[val] = (dict(data), int(signed_at.timestamp()))
        return self.session_class(data)


FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class StudyCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF protection, looking for the token only where the request can carry it.

    Flask-WTF looks in the form fields first, which makes every JSON API request go through
    form parsing machinery (a good part of its CPU) to find an empty form: only form-encoded
    bodies have form fields. For other bodies the token can only be in a header, so only the
    headers are searched (the same result); validation itself is Flask-WTF's, unchanged.
    """

    def _get_csrf_token(self):
        if request.mimetype in FORM_MIMETYPES:
            return super()._get_csrf_token()
        for header_name in current_app.config["WTF_CSRF_HEADERS"]:
            token = request.headers.get(header_name)
            if token:
                return token
        return None


SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the entry link carries the participant id
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@functools.lru_cache(maxsize=64)  # read on every request; a bad value raises (and is not cached)
def parse_rate(text: str) -> tuple[int, float]:
    """'120/60' -> (120 requests, per 60 seconds)."""
    try:
        count, _, seconds = str(text).partition("/")
        parsed = int(count), float(seconds or 60)
    except ValueError:
        raise ConfigurationError(f"rate limit {text!r}: expected COUNT/SECONDS such as 120/60") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise ConfigurationError(f"rate limit {text!r}: count and seconds must be positive")
    return parsed


class RateLimiter:
    """Fixed-window counters per key (e.g. ``ip:1.2.3.4``, ``rater:17``) in this process."""

    def __init__(self):
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def hit(self, key: str, limit: int, period: float) -> bool:
        """Count one request; False when the key is over its limit in the current window."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_sweep > 300:  # forget idle keys so memory stays bounded
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 300}
                self._last_sweep = now
            start, count = self._windows.get(key, (now, 0))
            if now - start >= period:
                start, count = now, 0
            count += 1
            self._windows[key] = (start, count)
            return count <= limit


def secret_key_from_env(testing: bool) -> str:
    key = os.environ.get("HVQEVAL_SECRET_KEY", "")
    if key:
        if len(key) < 16:
            raise ConfigurationError("HVQEVAL_SECRET_KEY is too short; use at least 16 random characters, e.g. "
                                     "`python -c 'import secrets; print(secrets.token_hex(32))'`")
        return key
    if testing:
        return secrets.token_hex(32)
    raise ConfigurationError("refusing to start without a secret key: set HVQEVAL_SECRET_KEY "
                             "(e.g. `export HVQEVAL_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')`)")


def admin_password_hash_from_env() -> str | None:
    """The admin password hash: HVQEVAL_ADMIN_PASSWORD_HASH, or a hash of HVQEVAL_ADMIN_PASSWORD."""
    hashed = os.environ.get("HVQEVAL_ADMIN_PASSWORD_HASH")
    if hashed:
        return hashed
    plain = os.environ.get("HVQEVAL_ADMIN_PASSWORD")
    return generate_password_hash(plain) if plain else None


def check_admin_password(password_hash: str | None, password: str) -> bool:
    if not password_hash or not password:
        return False
    try:
        return check_password_hash(password_hash, password)
    except (ValueError, TypeError):
        return False
