"""Security plumbing of the web app: response headers, rate limits, secret key and admin password.

Rate limits are fixed windows counted by the ``limits`` library in the storage named by
``HVQEVAL_RATE_LIMIT_STORAGE``: ``memory://`` (the default) counts in each server process, so
with N gunicorn workers a client can reach N times the limit; ``redis://HOST:PORT/DB`` counts
once for all workers and hosts that share that Redis database. They exist to stop a runaway
script or a stuck key from flooding the study, not as a defence against a botnet (put a
reverse proxy in front for that).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import threading
import time

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect, same_origin
from itsdangerous import BadSignature
from limits import RateLimitItemPerSecond
from limits import errors as limits_errors
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
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
    """Flask-WTF's CSRF protection, looking for the token only where the request can carry it,
    and remembering the signed tokens it has verified.

    Flask-WTF looks in the form fields first, which makes every JSON API request go through
    form parsing machinery (a good part of its CPU) to find an empty form: only form-encoded
    bodies have form fields. For other bodies the token can only be in a header, so only the
    headers are searched (the same result).

    A rater's page sends the same signed token with every answer. With tokens valid for the
    whole session (``WTF_CSRF_TIME_LIMIT`` None, as this app sets it) the signature check of
    a token gives the same result every time, so a token whose signature checked out is
    remembered with the raw token it carries; the request is accepted only if that raw token
    is the one in this request's session, as Flask-WTF requires. Anything else (a new token,
    another session, a time limit set) goes through Flask-WTF's own ``protect``.
    """

    def __init__(self, app=None):
        self._verified: dict[str, str] = {}
        super().__init__(app)

    def protect(self, apply_exemptions=False):
        if apply_exemptions and (not request.endpoint or self._is_exempt()):
            return
        config = current_app.config
        if request.method not in config["WTF_CSRF_METHODS"]:
            return
        field = config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        remember = config.get("WTF_CSRF_TIME_LIMIT", 3600) is None
        signed = self._get_csrf_token()
        known = self._verified.get(signed) if remember and signed else None
        if known is None or not isinstance(session.get(field), str) or not hmac.compare_digest(session[field], known):
            super().protect()  # validates, or answers 400 with Flask-WTF's reason
            if remember and signed and isinstance(session.get(field), str):
                if len(self._verified) >= SESSION_CACHE_SIZE:
                    self._verified.clear()
                self._verified[signed] = session[field]
            return
        if request.is_secure and config["WTF_CSRF_SSL_STRICT"]:
            if not request.referrer:
                self._error_response("The referrer header is missing.")
            if not same_origin(request.referrer, f"https://{request.host}/"):
                self._error_response("The referrer does not match the host.")
        g.csrf_valid = True

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


def parse_rate(text: str, setting: str = "rate limit") -> tuple[int, int]:
    """'120/60' -> (120 requests, per 60 seconds); ``setting`` names the value in the error."""
    try:
        count, _, seconds = str(text).partition("/")
        parsed = int(count), float(seconds or 60)
    except ValueError:
        raise ConfigurationError(f"{setting}={text!r}: expected COUNT/SECONDS such as 120/60") from None
    if parsed[0] < 1 or parsed[1] < 1 or not parsed[1].is_integer():
        raise ConfigurationError(f"{setting}={text!r}: COUNT and SECONDS must be whole numbers of at least 1, "
                                 "such as 120/60")
    return parsed[0], int(parsed[1])


DEFAULT_RATE_LIMIT_STORAGE = "memory://"
STORAGE_SETTING = "HVQEVAL_RATE_LIMIT_STORAGE"
# Redis calls on the request path give up quickly rather than holding a rater's request.
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
_REDIS_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
STORAGE_RETRY_SECONDS = 10.0
_log = logging.getLogger(__name__)


def _shown(uri: str) -> str:
    """The storage URI without its password, for messages."""
    return re.sub(r"://[^@/]*@", "://***@", uri)


class InlineExpiryMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage (``memory://``) without a thread started per request.

    ``MemoryStorage`` drops expired counters from a one-shot ``threading.Timer`` that every
    counted hit re-creates once the previous one has run (10 ms later): under steady traffic
    each request starts a thread and waits for it to start, which costs more than the rest of
    the rate limiting. Here the same purge runs inline, at most once per ``PURGE_SECONDS``;
    counting is unchanged (``get`` already drops an expired counter before it is read).
    """

    PURGE_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the timer of MemoryStorage
        now = time.monotonic()
        if now >= self._next_purge and self._purge_lock.acquire(blocking=False):
            try:
                self._next_purge = now + self.PURGE_SECONDS
                self._MemoryStorage__expire_events()
            finally:
                self._purge_lock.release()


def open_rate_limit_storage(uri: str) -> Storage:
    """The ``limits`` storage for ``uri``, checked once: an unknown scheme, a malformed URI or
    an unreachable server is a one-line ConfigurationError naming HVQEVAL_RATE_LIMIT_STORAGE."""
    shown = _shown(uri)
    hint = "use memory:// (counts per server process) or redis://HOST:PORT/DB (shared by all workers)"
    scheme = uri.partition("://")[0]
    options = dict(_REDIS_TIMEOUTS) if scheme in _REDIS_SCHEMES else {}
    try:
        if scheme == "memory":
            storage = InlineExpiryMemoryStorage(uri, wrap_exceptions=True)
        else:
            storage = storage_from_string(uri, wrap_exceptions=True, **options)
    except Exception as exc:  # unknown scheme, missing client library, malformed host or port
        reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).replace(uri, shown)
        raise ConfigurationError(f"{STORAGE_SETTING}={shown!r}: {reason}; {hint}") from None
    if not isinstance(storage, Storage):
        raise ConfigurationError(f"{STORAGE_SETTING}={shown!r}: asynchronous storages cannot be used here; {hint}")
    try:
        healthy = storage.check()
    except Exception:  # noqa: BLE001 - any failure of the check means the same to the operator
        healthy = False
    if not healthy:
        raise ConfigurationError(f"{STORAGE_SETTING}={shown!r}: cannot reach the rate-limit storage; start it, "
                                 f"or fix its host, port, database and password, or {hint}")
    return storage


def close_rate_limit_storage(storage: Storage) -> None:
    """Close the storage's connections (a server's, before gunicorn forks its workers)."""
    connection = getattr(storage, "get_connection", None)
    if connection is not None:
        connection().close()


class RateLimits:
    """Named fixed-window limits (``ip``, ``rater``, ``login``) over one ``limits`` storage.

    The limits are parsed once (per app, i.e. per server process); a request only counts a hit.
    Should the storage fail while serving (Redis restarted or unreachable), requests are let
    through and limits are skipped for ``STORAGE_RETRY_SECONDS`` with one warning in the log:
    a flood guard must not turn raters away with errors.
    """

    def __init__(self, storage: Storage, rates: dict[str, tuple[int, int]]):
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._items = {name: RateLimitItemPerSecond(count, seconds, namespace=f"hvqeval-{name}")
                       for name, (count, seconds) in rates.items()}
        self._skip_until = 0.0

    def hit(self, name: str, who: str) -> bool:
        """Count one request of ``who`` against the limit ``name``; False when it is over the limit."""
        if self._skip_until and time.monotonic() < self._skip_until:
            return True
        try:
            return self._limiter.hit(self._items[name], who)
        except limits_errors.StorageError as exc:
            self._skip_until = time.monotonic() + STORAGE_RETRY_SECONDS
            _log.warning("rate-limit storage failed (%s: %s); limits skipped for %.0f s",
                         type(exc.storage_error).__name__, exc.storage_error, STORAGE_RETRY_SECONDS)
            return True


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
