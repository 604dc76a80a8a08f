"""Human-study web app (paper Section 7.3, Appendix G): realism ratings and pairwise preferences.

The Flask application factory, in the flaskr shape: ``create_app(test_config=None)`` reads
its settings from the environment (or ``test_config``), keeps its SQLite database and image
cache in the instance folder, and registers one blueprint per concern:

* ``rater``  – entry link, instructions/consent, the task page and its JSON API;
* ``images`` – 512×512 upscaled images behind opaque ids;
* ``admin``  – password-protected progress pages, open/close, export download.

Environment: ``HVQEVAL_SECRET_KEY`` (required outside tests), ``HVQEVAL_STUDY_DATABASE_URL``,
``HVQEVAL_INSTANCE_DIR`` (database and image cache; default ``instance/`` next to the package),
``HVQEVAL_ADMIN_PASSWORD_HASH`` or ``HVQEVAL_ADMIN_PASSWORD``, ``HVQEVAL_RATE_LIMIT_RATER``,
``HVQEVAL_RATE_LIMIT_IP`` (``COUNT/SECONDS``), ``HVQEVAL_RATE_LIMIT_STORAGE`` (``memory://``, per
server process, or ``redis://HOST:PORT/DB``, shared by all workers), ``HVQEVAL_HTTPS=1`` (Secure cookies, HSTS),
``HVQEVAL_PROXY_HOPS`` (trusted reverse proxies for the client address).
"""

from __future__ import annotations

import os
from pathlib import Path


def create_app(test_config: dict | None = None):
    from flask import Flask
    from study_app import admin, db, images, rater, web
    from study_app.security import (DEFAULT_RATE_LIMIT_STORAGE, RateLimits, StudyCSRFProtect,
                                    VerifiedCookieSessionInterface, admin_password_hash_from_env,
                                    open_rate_limit_storage, parse_rate, secret_key_from_env)

    instance_dir = os.environ.get("HVQEVAL_INSTANCE_DIR")
    app = Flask(__name__, instance_relative_config=True,
                instance_path=str(Path(instance_dir).resolve()) if instance_dir else None)
    test_config = dict(test_config or {})
    testing = bool(test_config.get("TESTING"))
    https = os.environ.get("HVQEVAL_HTTPS", "") == "1"
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("HVQEVAL_STUDY_DATABASE_URL") or db.default_database_url(app.instance_path),
        IMAGE_CACHE_DIR=str(Path(app.instance_path) / "cache" / "images"),
        RATE_LIMIT_RATER=os.environ.get("HVQEVAL_RATE_LIMIT_RATER", "240/60"),
        RATE_LIMIT_IP=os.environ.get("HVQEVAL_RATE_LIMIT_IP", "6000/60"),
        RATE_LIMIT_LOGIN="10/60",
        RATE_LIMIT_STORAGE=os.environ.get("HVQEVAL_RATE_LIMIT_STORAGE") or DEFAULT_RATE_LIMIT_STORAGE,
        DISPLAY_SIZE=512,  # paper Appendix G: images upscaled to 512×512, bilinear
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        HTTPS=https,
        PROXY_HOPS=int(os.environ.get("HVQEVAL_PROXY_HOPS", "0") or 0),
        WTF_CSRF_TIME_LIMIT=None,  # valid for the whole session: a study can take an hour
        WTF_CSRF_SSL_STRICT=https,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if "SECRET_KEY" not in test_config:
        app.config["SECRET_KEY"] = secret_key_from_env(testing)
    if "ADMIN_PASSWORD_HASH" not in test_config:
        app.config["ADMIN_PASSWORD_HASH"] = admin_password_hash_from_env()
    app.config.update(test_config)
    app.config["DATABASE_URL"] = db.normalise_url(app.config["DATABASE_URL"])
    # Parsed and connected once per app (per server process): fail at start, not on a request.
    rates = {name: parse_rate(app.config[f"RATE_LIMIT_{name.upper()}"], setting)
             for name, setting in (("rater", "HVQEVAL_RATE_LIMIT_RATER"), ("ip", "HVQEVAL_RATE_LIMIT_IP"),
                                   ("login", "RATE_LIMIT_LOGIN"))}
    rate_limits = RateLimits(open_rate_limit_storage(app.config["RATE_LIMIT_STORAGE"]), rates)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if app.config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=app.config["PROXY_HOPS"])

    app.session_interface = VerifiedCookieSessionInterface()
    app.extensions["study_rate_limits"] = rate_limits
    StudyCSRFProtect(app)
    web.init_app(app)
    app.register_blueprint(rater.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(admin.bp)
    return app
