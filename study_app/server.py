"""Production server for the study app: gunicorn (pre-fork WSGI) running ``create_app``.

Workers are ``gthread`` workers, so a rater's idle keep-alive connection waits in the worker's
poller and does not hold a whole process. The threads of one process share one core (the GIL)
and this app's requests are mostly CPU, so it runs more processes with few threads each (see
``default_concurrency``). The app is built in every worker after the fork (no preloading), so no database
connection is ever shared between processes.
"""

from __future__ import annotations

import os

from study_app.errors import ConfigurationError


def default_concurrency(database_url: str) -> tuple[int, int]:
    """(workers, threads) for this machine and database, as measured in docs/BENCHMARKS.md.

    SQLite: 2 x cores + 1 workers of one thread (gunicorn's rule of thumb); a request is all
    CPU in this process, and threads of one process would share one core. PostgreSQL:
    2 x cores workers of two threads; every commit waits for the server's WAL flush (and
    the network), and the second thread computes meanwhile.
    """
    cores = os.cpu_count() or 1
    if database_url.startswith("postgresql"):
        return 2 * cores, 2
    return 2 * cores + 1, 1


def resolve_concurrency(database_url: str, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads) as asked, with ``default_concurrency`` for what was left as None."""
    default_workers, default_threads = default_concurrency(database_url)
    return (default_workers if workers is None else workers, default_threads if threads is None else threads)


def check_production_config() -> None:
    """Refuse to serve without the settings production needs, or with a rate-limit storage that
    cannot be used (before any worker starts, so the error is one line and not one per worker)."""
    from study_app.security import (DEFAULT_RATE_LIMIT_STORAGE, close_rate_limit_storage, open_rate_limit_storage,
                                    secret_key_from_env)

    secret_key_from_env(testing=False)
    close_rate_limit_storage(open_rate_limit_storage(
        os.environ.get("HVQEVAL_RATE_LIMIT_STORAGE") or DEFAULT_RATE_LIMIT_STORAGE))


def serve(database_url: str, bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int | None = None,
          timeout: int = 30, access_log: str | None = None, instance_dir: str | None = None,
          worker_class: str = "gthread") -> None:
    """Run gunicorn in the foreground until interrupted; workers and threads left as None take
    ``default_concurrency`` for this machine and database."""
    from gunicorn.app.base import BaseApplication

    workers, threads = resolve_concurrency(database_url, workers, threads)
    if workers < 1 or threads < 1:
        raise ConfigurationError("--workers and --threads must be at least 1")
    if worker_class not in ("gthread", "sync"):
        raise ConfigurationError(f"--worker-class must be gthread or sync, got {worker_class!r}")
    check_production_config()
    os.environ["HVQEVAL_STUDY_DATABASE_URL"] = database_url
    if instance_dir:
        os.environ["HVQEVAL_INSTANCE_DIR"] = os.path.abspath(instance_dir)

    class StudyServer(BaseApplication):
        def load_config(self):
            settings = {"bind": bind, "workers": workers, "threads": threads, "worker_class": worker_class,
                        "timeout": timeout, "graceful_timeout": 10, "keepalive": 5, "backlog": 2048,
                        "accesslog": access_log, "errorlog": "-", "loglevel": "warning", "preload_app": False,
                        "proc_name": "hvqeval-study"}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            from study_app import create_app

            return create_app()

    StudyServer().run()
