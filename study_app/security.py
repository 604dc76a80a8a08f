"""Security headers and the admin password check (sessions, CSRF and rate limits are the
libraries' own: Flask, Flask-WTF, Flask-Limiter; see ``create_app``)."""

from __future__ import annotations

from werkzeug.security import check_password_hash

# Images and scripts only from this server; nothing may frame the pages (click-jacking) but
# the crowd platform that shows a study in a frame (MTurk's ExternalQuestion), see
# ``content_security_policy``.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The entry link carries the participant id: no other site may see it in a Referer. Our own
    # pages' requests keep theirs: over HTTPS, Flask-WTF's CSRF check (WTF_CSRF_SSL_STRICT)
    # refuses a POST without a same-origin Referer, so "no-referrer" would refuse every rater.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def content_security_policy(frame_ancestors: list[str], form_action: list[str] = ()) -> str:
    """The policy of a rater's page: framed only by ``frame_ancestors`` (origins; MTurk shows
    an ExternalQuestion HIT in a frame of its own site), forms posted only to this server and
    ``form_action``. (X-Frame-Options cannot name an origin: such a page sends none, and
    browsers follow ``frame-ancestors``.)"""
    return CONTENT_SECURITY_POLICY.replace(
        "frame-ancestors 'none'", " ".join(["frame-ancestors 'self'", *frame_ancestors])
    ).replace("form-action 'self'", " ".join(["form-action 'self'", *form_action]))


HSTS = "max-age=31536000"


def check_admin_password(password_hash: str | None, password: str) -> bool:
    if not password_hash or not password:
        return False
    try:
        return check_password_hash(password_hash, password)
    except (ValueError, TypeError):
        return False
