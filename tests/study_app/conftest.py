"""Fixtures of the study-app tests: sample sets on disk, a migrated database per test
(SQLite file, or a fresh PostgreSQL schema that is dropped afterwards), the Flask app and a
client that carries the CSRF token like the rater's browser does."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hvqeval.sample_set import SampleSetWriter
from study_app import create_app
from study_app.db import dispose_engines, upgrade

SECRET = "test-secret-key-0123456789abcdef"
CLASS_NAMES = {3: "ring (3)", 5: "square (5)", 7: "triangle (7)"}


def make_sample_set(path, model: str, per_class: int, classes=(3, 5, 7), size: int = 8, seed: int = 0):
    """A sample set of random ``size``×``size`` images, ``per_class`` per class."""
    rng = np.random.default_rng(seed)
    writer = SampleSetWriter(path, model=model, image_size=size, seed=seed, temperature=1.0, sampler="cached")
    for c in classes:
        for _ in range(per_class):
            writer.add(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), c, CLASS_NAMES.get(c, f"c{c} ({c})"))
    return writer.close()


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
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup


@pytest.fixture
def db_url(database_url):
    url, cleanup = isolated_url(database_url)
    upgrade(url)
    yield url
    dispose_engines()
    cleanup()


@pytest.fixture
def sets(tmp_path):
    """Two generated sample sets (models 'ff' and 'msp'), 6 images for each of classes 3, 5, 7."""
    return {
        "ff": make_sample_set(tmp_path / "samples" / "ff", "tiny_ff", 6, seed=1),
        "msp": make_sample_set(tmp_path / "samples" / "msp", "tiny_msp", 6, seed=2),
    }


@pytest.fixture
def app(db_url, tmp_path):
    return create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": db_url,
                       "IMAGE_CACHE_DIR": str(tmp_path / "cache"), "RATE_LIMIT_RATER": "100000/60",
                       "RATE_LIMIT_IP": "100000/60"})


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
        r = self.client.post(f"/s/{self.public_id}/consent", data={"agree": "yes", "csrf_token": self.csrf},
                             follow_redirects=True)
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


@pytest.fixture
def new_rater(app):
    """Factory: a RaterClient (own cookie jar) already through entry and consent."""

    def make(public_id: str, participant: str) -> RaterClient:
        client = RaterClient(app.test_client(), public_id)
        client.enter(participant)
        return client

    return make


@pytest.fixture
def sample_set_factory(tmp_path):
    return lambda name, model, per_class, **kw: make_sample_set(tmp_path / "samples" / name, model, per_class, **kw)
