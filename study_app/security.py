"""Security headers and the admin password check (sessions, CSRF and rate limits are the
libraries' own: Flask, Flask-WTF, Flask-Limiter; see ``create_app``)."""

from __future__ import annotations

from collections.abc import Sequence

from werkzeug.security import check_password_hash

from study_app.page_assets import PageAssets

# Everything from this server; the only inline style and script are the pages' own (their
# hashes, ``page_assets.py``); images also as ``data:`` URLs (the icon). Nothing may frame the
# pages (click-jacking) but the crowd platform that shows a study in a frame (MTurk's
# ExternalQuestion), see ``content_security_policy``.
SECURITY_HEADERS = {
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


def content_security_policy(
    assets: PageAssets,
    frame_ancestors: Sequence[str] | None = None,
    form_action: Sequence[str] = (),
) -> str:
    """The policy of a page that carries ``assets``: framed by no one, or by this server and
    ``frame_ancestors`` (origins; MTurk shows an ExternalQuestion HIT in a frame of its own
    site); forms posted only to this server and ``form_action``. (X-Frame-Options cannot name
    an origin: a page that may be framed sends none, and browsers follow ``frame-ancestors``.)"""
    framed_by = "'none'" if frame_ancestors is None else " ".join(["'self'", *frame_ancestors])
    return "; ".join(
        [
            "default-src 'self'",
            "img-src 'self' data:",
            "script-src " + " ".join(assets.script_sources),
            "style-src " + " ".join(assets.style_sources),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action " + " ".join(["'self'", *form_action]),
            f"frame-ancestors {framed_by}",
        ]
    )


HSTS = "max-age=31536000"


def check_admin_password(password_hash: str | None, password: str) -> bool:
    if not password_hash or not password:
        return False
    try:
        return check_password_hash(password_hash, password)
    except (ValueError, TypeError):
        return False
