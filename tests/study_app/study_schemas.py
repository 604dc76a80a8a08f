"""Test support of the study-app tests: private PostgreSQL schemas that share one test database,
engines kept per URL for a test (disposed by the ``db_url`` fixture), and a Flask test client
that behaves like the rater's page, and the small two-model rating study many tests start from."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import make_engine

_ENGINES: dict[str, Engine] = {}


def small_rating_study(db_url, sets, instance, name, models=("ff", "msp"), tasks_per_rater=3):
    """A rating study of ``models`` (sample sets of the ``sets`` fixture), classes 3 and 5, two
    images per class and model, two raters per item; ``create_study``'s summary."""
    return create_study(
        db_url,
        StudySettings(
            name=name,
            kind="rating",
            sources=tuple(SourceSpec(m, str(sets[m].path)) for m in models),
            classes=(3, 5),
            per_class=2,
            answers_per_item=2,
            tasks_per_rater=tasks_per_rater,
        ),
        instance,
    )


def engine_for(url: str) -> Engine:
    """One engine per URL for the running test (tests call this from many helpers)."""
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def dispose_all() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def isolated_url(database_url: str):
    """(url, cleanup): SQLite as is; PostgreSQL in a fresh schema via the connection's search_path."""
    if not database_url.startswith("postgresql"):
        return database_url, lambda: None
    schema = f"study_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def cleanup():
        dispose_all()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup


class RaterClient:
    """A Flask test client that keeps the page's CSRF token and sends it like rater.js does."""

    def __init__(self, client, public_id: str):
        self.client = client
        self.public_id = public_id
        self.csrf = None

    def _remember(self, response):
        found = re.search(rb'name="csrf-token" content="([^"]+)"', response.data)
        if found:
            self.csrf = found.group(1).decode()
        return response

    def get(self, path, **kwargs):
        return self._remember(self.client.get(path, **kwargs))

    def enter(self, participant: str):
        r = self.get(f"/s/{self.public_id}/?PROLIFIC_PID={participant}", follow_redirects=True)
        assert r.status_code == 200, r.data
        r = self.client.post(
            f"/s/{self.public_id}/consent",
            data={"agree": "yes", "csrf_token": self.csrf},
            follow_redirects=True,
        )
        self._remember(r)
        assert r.status_code == 200, r.data
        return r

    def api(self, name: str, body=None, csrf=True):
        headers = {"X-CSRFToken": self.csrf} if csrf else {}
        return self.client.post(f"/s/{self.public_id}/api/{name}", json=body or {}, headers=headers)

    def next(self):
        r = self.api("next")
        assert r.status_code == 200, r.data
        return r.get_json()

    def answer(self, task: str, answer, response_ms: int = 1234, reason=None):
        body = {"task": task, "answer": answer, "response_ms": response_ms}
        if reason is not None:
            body["reason"] = reason
        return self.api("answer", body)


def admin_app(db_url: str, cache_dir, password: str = "hunter22"):
    """The study app of ``db_url`` with its admin pages on (``password``)."""
    from werkzeug.security import generate_password_hash

    from study_app import create_app

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "a" * 32,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(cache_dir),
            "ADMIN_PASSWORD_HASH": generate_password_hash(password),
        }
    )


def logged_in_admin(app, password: str):
    """A test client of ``app`` logged in to the admin pages (the login form, with its token)."""
    admin = app.test_client()
    login = admin.get("/admin/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', login.data).group(1).decode()
    reply = admin.post("/admin/login", data={"password": password, "csrf_token": token})
    assert reply.status_code == 302, reply.status_code
    return admin
