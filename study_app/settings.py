"""Settings of the study app: their defaults, their environment variables (read by the CLI, never
by the app) and the checks that turn a bad value into one ``ConfigurationError`` line.

Rate limits are ``COUNT/SECONDS`` fixed windows counted by Flask-Limiter in
``RATE_LIMIT_STORAGE``: ``memory://`` counts in each server process (N workers let a client
reach N times the limit); ``redis://HOST:PORT/DB`` counts once for every worker sharing it. They
stop a runaway script or a stuck key, not a botnet (put a reverse proxy in front for that).
"""

from __future__ import annotations

import re
import secrets

from study_app.errors import ConfigurationError

DEFAULTS = {
    "DATABASE_URL": None,  # required
    "SECRET_KEY": None,  # required outside tests
    "ADMIN_PASSWORD_HASH": None,  # admin pages are off without it
    "INSTANCE_DIR": None,  # image cache; Flask's default instance folder when None
    "RATE_LIMIT_RATER": "240/60",
    "RATE_LIMIT_IP": "6000/60",
    "RATE_LIMIT_LOGIN": "10/60",
    "RATE_LIMIT_STORAGE": "memory://",
    "HTTPS": False,  # Secure cookies, HSTS, strict CSRF referrer checks
    "PROXY_HOPS": 0,  # trusted reverse proxies in front (client address from X-Forwarded-For)
    "DISPLAY_SIZE": 512,  # paper Appendix G: images upscaled to 512×512, bilinear
    # Origins an MTurk HIT may send its finished raters' form to (turkSubmitTo), comma-separated.
    "MTURK_SUBMIT_HOSTS": "https://www.mturk.com,https://workersandbox.mturk.com",
    "TESTING": False,
}

# setting -> environment variable the CLI reads it from
ENVIRONMENT = {
    "DATABASE_URL": "HVQEVAL_STUDY_DATABASE_URL",
    "SECRET_KEY": "HVQEVAL_SECRET_KEY",
    "ADMIN_PASSWORD_HASH": "HVQEVAL_ADMIN_PASSWORD_HASH",
    "RATE_LIMIT_RATER": "HVQEVAL_RATE_LIMIT_RATER",
    "RATE_LIMIT_IP": "HVQEVAL_RATE_LIMIT_IP",
    "RATE_LIMIT_STORAGE": "HVQEVAL_RATE_LIMIT_STORAGE",
    "HTTPS": "HVQEVAL_HTTPS",
    "PROXY_HOPS": "HVQEVAL_PROXY_HOPS",
    "MTURK_SUBMIT_HOSTS": "HVQEVAL_MTURK_SUBMIT_HOSTS",
}
STORAGE_HINT = (
    "use memory:// (counts per server process) or redis://HOST:PORT/DB (shared by all workers)"
)
SECRET_HINT = "`python -c 'import secrets; print(secrets.token_hex(32))'`"
MIN_ADMIN_PASSWORD = 8


def _name(setting: str) -> str:
    return ENVIRONMENT.get(setting, setting)


def parse_rate(text, setting: str = "rate limit") -> tuple[int, int]:
    """'120/60' -> (120 requests, per 60 seconds); ``setting`` names the value in the error."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not found or int(found[1]) < 1 or int(found[2]) < 1:
        raise ConfigurationError(
            f"{setting}={text!r}: expected COUNT/SECONDS of whole numbers of at least 1, "
            "such as 120/60"
        )
    return int(found[1]), int(found[2])


def limit_string(text: str) -> str:
    """'120/60' as Flask-Limiter writes it: '120 per 60 second'."""
    count, seconds = parse_rate(text)
    return f"{count} per {seconds} second"


def check_settings(config: dict) -> dict:
    """The settings with their types checked and defaults filled in; ConfigurationError (one
    line naming the setting and what to do) for the first bad one. No I/O."""
    config = {**DEFAULTS, **config}  # Flask's and the libraries' own keys pass through
    if not config.get("DATABASE_URL"):
        raise ConfigurationError(
            "no study database: set HVQEVAL_STUDY_DATABASE_URL or pass --database-url"
        )
    key = config.get("SECRET_KEY")
    if not key:
        if not config.get("TESTING"):
            raise ConfigurationError(
                "refusing to start without a secret key: set HVQEVAL_SECRET_KEY, or "
                f"HVQEVAL_SECRET_KEY_FILE / --secret-key-file, to e.g. {SECRET_HINT}"
            )
        config["SECRET_KEY"] = secrets.token_hex(32)
    elif len(key) < 16:
        raise ConfigurationError(
            f"the secret key is too short; use at least 16 random characters, e.g. {SECRET_HINT}"
        )
    for setting in ("RATE_LIMIT_RATER", "RATE_LIMIT_IP", "RATE_LIMIT_LOGIN"):
        parse_rate(config[setting], _name(setting))
    storage = str(config["RATE_LIMIT_STORAGE"])
    if storage.partition("://")[0] not in ("memory", "redis", "rediss", "redis+unix"):
        raise ConfigurationError(
            f"HVQEVAL_RATE_LIMIT_STORAGE={shown_uri(storage)!r}: {STORAGE_HINT}"
        )
    for setting in ("HTTPS",):
        value = config[setting]
        if isinstance(value, str):
            if value not in ("", "0", "1"):
                raise ConfigurationError(f"{_name(setting)}={value!r}: use 1 (on) or 0 (off)")
            value = value == "1"
        config[setting] = bool(value)
    hops = config["PROXY_HOPS"]
    if not str(hops).strip().isdigit():
        raise ConfigurationError(
            f"HVQEVAL_PROXY_HOPS={hops!r}: give the number of trusted proxies (0, 1, ...)"
        )
    config["PROXY_HOPS"] = int(hops)
    password_hash = config.get("ADMIN_PASSWORD_HASH")
    if password_hash and not is_password_hash(str(password_hash)):
        raise ConfigurationError(
            "HVQEVAL_ADMIN_PASSWORD_HASH is not a password hash (werkzeug's "
            "method$salt$hash); make one with `hvqeval study hash-password`"
        )
    from study_app.platforms import allowed_hosts

    try:
        allowed_hosts(config["MTURK_SUBMIT_HOSTS"])
    except ValueError as err:
        raise ConfigurationError(
            f"HVQEVAL_MTURK_SUBMIT_HOSTS: {str(err)!r} is not an http(s) origin; give "
            "comma-separated origins such as https://www.mturk.com"
        ) from None
    return config


def settings_from_environment(environ) -> dict:
    """The settings named in ``environ`` (HVQEVAL_... variables); for the CLI layer."""
    found = {
        setting: environ[variable]
        for setting, variable in ENVIRONMENT.items()
        if environ.get(variable)
    }
    if not found.get("ADMIN_PASSWORD_HASH") and environ.get("HVQEVAL_ADMIN_PASSWORD"):
        from werkzeug.security import generate_password_hash

        check_admin_password(environ["HVQEVAL_ADMIN_PASSWORD"], "HVQEVAL_ADMIN_PASSWORD")
        found["ADMIN_PASSWORD_HASH"] = generate_password_hash(environ["HVQEVAL_ADMIN_PASSWORD"])
    return found


def check_admin_password(password: str, where: str) -> None:
    """The admin pages open every rater's platform ids and close the study: a password of at
    least ``MIN_ADMIN_PASSWORD`` characters."""
    if len(password) < MIN_ADMIN_PASSWORD:
        raise ConfigurationError(
            f"{where}: use at least {MIN_ADMIN_PASSWORD} characters for the admin password"
        )


def is_password_hash(text: str) -> bool:
    """Whether ``text`` has the form of a werkzeug password hash, ``method$salt$hash`` with a
    method of ``generate_password_hash`` (scrypt or pbkdf2) and a hex digest: anything else
    would refuse every login while the server looked healthy."""
    method, _, rest = text.partition("$")
    salt, _, digest = rest.partition("$")
    return (
        method.split(":")[0] in ("scrypt", "pbkdf2")
        and bool(salt)
        and bool(re.fullmatch(r"[0-9a-f]{32,}", digest))
    )


def shown_uri(uri: str) -> str:
    """A storage URI without its password, for messages."""
    return re.sub(r"://[^@/]*@", "://***@", uri)


def check_rate_limit_storage(uri: str) -> None:
    """Connect to the rate-limit storage once (before serving): one line if it cannot be used."""
    from limits.storage import storage_from_string

    try:
        storage = (
            storage_from_string(uri, socket_connect_timeout=1.0, socket_timeout=1.0)
            if uri.startswith("redis")
            else storage_from_string(uri)
        )
        healthy = storage.check()
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the operator
        healthy, reason = (
            False,
            (str(exc).splitlines() or [type(exc).__name__])[0].replace(uri, shown_uri(uri)),
        )
    else:
        reason = "cannot reach it"
    if not healthy:
        raise ConfigurationError(
            f"HVQEVAL_RATE_LIMIT_STORAGE={shown_uri(uri)!r}: {reason}; start it, or fix its "
            f"host, port, database and password, or {STORAGE_HINT}"
        )
