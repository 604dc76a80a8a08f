"""Production server for the study app: gunicorn (pre-fork WSGI) running ``create_app(config)``.

Workers are ``gthread`` workers, so a rater's idle keep-alive connection waits in the worker's
poller and does not hold a whole process. The app is built in every worker after the fork (no
preloading), so no database connection is ever shared between processes. The settings are
checked once, before gunicorn starts (``check_before_serving``).
"""

from __future__ import annotations

import errno
import os
import socket

from study_app.errors import ConfigurationError


def default_concurrency(database_url: str) -> tuple[int, int]:
    """(workers, threads): one worker per core; one thread each on SQLite, two on PostgreSQL.

    The work of a request is CPU in Python, so more runnable threads than cores only queue and
    switch. SQLite has one writer at a time: a writer that finds the lock taken sleeps in
    SQLite's busy handler (1, 2, 5, 10 ms and longer), so fewer concurrent writers mean fewer
    such sleeps in the tail latency. On PostgreSQL a second thread works while the first waits
    for a round trip. Measured on 2 quiet cores with the load benchmark (docs/BENCHMARKS.md):
    gunicorn's rule of thumb (2 x cores + 1 workers of 2 threads) answered with p99 1.4 s on
    SQLite; cores + 1 workers (3 x 1 on SQLite, 3 x 2 on PostgreSQL) 330 ms and 690-1,000 ms;
    one worker per core (2 x 1, 2 x 2) 250 ms and 290-360 ms."""
    cores = os.cpu_count() or 1
    threads = 1 if database_url.startswith("sqlite") else 2
    return cores, threads


def check_before_serving(config: dict, bind: str, access_log: str | None = None) -> dict:
    """Every setting, the rate-limit storage, the database (reachable, current schema), the
    port and the access log, checked once: the first problem is one ConfigurationError /
    DatabaseError line."""
    from study_app.db import open_database
    from study_app.settings import check_rate_limit_storage, check_settings

    config = check_settings(config)
    check_rate_limit_storage(config["RATE_LIMIT_STORAGE"])
    with open_database(config["DATABASE_URL"]):
        pass
    check_port_free(bind)
    check_access_log(access_log)
    return config


def check_access_log(path: str | None) -> None:
    """The access log file can be written (gunicorn opens it for appending, as here): else one
    line now, not gunicorn's error after the images were rendered."""
    if path is None or path == "-":
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise ConfigurationError(
            f"--access-log {path}: {err.strerror or err}; give a file in a folder that exists "
            "and can be written, or '-' for stderr"
        ) from None


def prerender_before_serving(config: dict, progress=None) -> int:
    """Render every study image's upscale into the image cache before the port is bound, so
    no rater request encodes a PNG (a 2,000-image study takes about half a minute once; images
    already rendered are skipped). Returns how many images the database holds."""
    from pathlib import Path

    from study_app.db import make_engine
    from study_app.images import image_cache_dir, prerender_images

    engine = make_engine(config["DATABASE_URL"])
    try:
        return prerender_images(
            engine,
            config["DISPLAY_SIZE"],
            image_cache_dir(Path(config["INSTANCE_DIR"]).resolve()),
            progress,
        )
    finally:
        engine.dispose()  # the workers open their own connections after the fork


def check_port_free(bind: str) -> None:
    if bind.startswith(("unix:", "fd://")):
        return  # gunicorn reports its own errors for these
    host, _, port = bind.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigurationError(
            f"--bind {bind!r}: expected HOST:PORT with a port of 1-65535, such as 127.0.0.1:8000"
        )
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, int(port)), family=family):
            pass
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            hint = "is another server running there? Stop it or choose another --bind"
        elif err.errno == errno.EACCES:
            hint = "ports below 1024 need privileges; choose a port of 1024 or more"
        else:  # an unknown name, an address of no interface of this machine, ...
            hint = "give an address of this machine, such as 127.0.0.1 or 0.0.0.0"
        raise ConfigurationError(
            f"cannot listen on {bind}: {err.strerror or err}; {hint}"
        ) from None


def serve(
    config: dict,
    bind: str = "127.0.0.1:8000",
    workers: int | None = None,
    threads: int | None = None,
    timeout: int = 30,
    access_log: str | None = None,
    on_ready=None,
    on_exit=None,
) -> None:
    """Run gunicorn in the foreground until interrupted (``config`` already checked).
    ``on_ready(workers, threads)`` is called once it listens, ``on_exit()`` as it stops (on
    SIGTERM or Ctrl-C, after the workers finished their requests)."""
    from gunicorn.app.base import BaseApplication

    default_workers, default_threads = default_concurrency(config["DATABASE_URL"])
    workers, threads = workers or default_workers, threads or default_threads

    class StudyServer(BaseApplication):
        def load_config(self):
            settings = {
                "bind": bind,
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": timeout,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": access_log,
                "errorlog": "-",
                "loglevel": "warning",
                "preload_app": False,
                "proc_name": "hvqeval-study",
            }
            if on_ready is not None:
                settings["when_ready"] = lambda _arbiter: on_ready(workers, threads)
            if on_exit is not None:
                settings["on_exit"] = lambda _arbiter: on_exit()
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            from study_app import create_app

            return create_app(config)

    StudyServer().run()
