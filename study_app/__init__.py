"""Human-study web app (paper Section 7.3, Appendix G): realism ratings and pairwise preferences.

The Flask application factory, in the flaskr shape: ``create_app(config)`` takes every setting
in ``config`` (the CLI reads the environment and its options and passes them; the app never
reads ``os.environ``), and registers one blueprint per concern:

* ``rater``  – entry link, instructions/consent, the task page and its JSON API;
* ``images`` – 512×512 upscaled images behind opaque ids;
* ``admin``  – password-protected progress pages, open/close, export download;

plus ``GET /healthz`` for load balancers. Security parts are the libraries' own: Flask's signed
cookie sessions, Flask-WTF's CSRF protection, Flask-Limiter's rate limits.
"""

from __future__ import annotations

from pathlib import Path

from study_app.settings import check_settings, limit_string


def create_app(config: dict | None = None):
    """The study app for ``config`` (keys of ``settings.DEFAULTS``; ``TESTING`` for tests)."""
    from flask import Flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    from flask_wtf.csrf import CSRFProtect

    from study_app import admin, images, rater, web
    from study_app.db import make_engine

    config = check_settings(config or {})
    app = Flask(
        __name__,
        static_folder=None,  # the pages carry their stylesheet, script and icon (page_assets.py)
        instance_path=config.get("INSTANCE_DIR") and str(Path(config["INSTANCE_DIR"]).resolve()),
    )
    app.config.from_mapping(
        IMAGE_CACHE_DIR=str(images.image_cache_dir(app.instance_path)),
        SESSION_COOKIE_HTTPONLY=True,
        # MTurk shows a study in a frame of its own site, where a browser sends a SameSite=Lax
        # cookie never, and an unpartitioned third-party one not always (some block them). Over
        # HTTPS (which MTurk requires) the session cookie is SameSite=None and Partitioned
        # (CHIPS: kept per top-level site; a rater who opens the link itself is unaffected).
        # Forms and API calls stay protected by Flask-WTF's tokens and its strict referrer check.
        SESSION_COOKIE_SAMESITE="None" if config["HTTPS"] else "Lax",
        SESSION_COOKIE_PARTITIONED=config["HTTPS"],
        SESSION_COOKIE_SECURE=config["HTTPS"],
        WTF_CSRF_TIME_LIMIT=None,  # valid for the whole session: a study can take an hour
        WTF_CSRF_SSL_STRICT=config["HTTPS"],
        MAX_CONTENT_LENGTH=64 * 1024,
        RATELIMIT_STORAGE_URI=config["RATE_LIMIT_STORAGE"],
        RATELIMIT_DEFAULT=limit_string(config["RATE_LIMIT_IP"]),
        # No X-RateLimit-* headers on every response (each costs reads of the limit storage):
        # a 429 says when to come back (Retry-After, web.py) and the raters' pages need no more.
        RATELIMIT_HEADERS_ENABLED=False,
        RATELIMIT_SWALLOW_ERRORS=True,  # a failing limit storage lets raters through, logged
    )
    app.config.update(config)
    if config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=config["PROXY_HOPS"], x_proto=config["PROXY_HOPS"]
        )

    app.extensions["study_engine"] = make_engine(config["DATABASE_URL"])
    CSRFProtect(app)
    web.init_app(app)
    app.register_blueprint(rater.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(admin.bp)

    limiter = Limiter(get_remote_address, app=app)
    # The route limits below refer to the limiter weakly; with the limits switched off
    # (RATELIMIT_ENABLED=False) Flask-Limiter does not keep it on the app, so the app does.
    app.extensions["study_limiter"] = limiter
    # One counter per request of the answer loop: the API counts against the rater (whose
    # session came through an address-limited entry; without a session the key is the address)
    # instead of also against the address, and the images, files behind the session check, are
    # exempt. Each count costs CPU on every request (the memory storage starts
    # its expiry timer thread), and the loop is where a study's load is.
    per_rater = limiter.limit(
        limit_string(config["RATE_LIMIT_RATER"]),
        key_func=rater.rate_limit_key,
        override_defaults=True,
    )
    for endpoint in ("rater.api_next", "rater.api_answer"):
        app.view_functions[endpoint] = per_rater(app.view_functions[endpoint])
    app.view_functions["images.image"] = limiter.exempt(app.view_functions["images.image"])
    app.view_functions["admin.login"] = limiter.limit(
        limit_string(config["RATE_LIMIT_LOGIN"]),
        methods=["POST"],
        override_defaults=False,
    )(app.view_functions["admin.login"])
    return app
