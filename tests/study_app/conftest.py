"""Fixtures of the study-app tests: sample sets on disk, a migrated empty database per test
(a copy of a SQLite file migrated once, or a private PostgreSQL schema migrated once, emptied
after every test and dropped at the end), the Flask app and a client that carries the CSRF
token like the rater's browser does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from study_schemas import RaterClient, dispose_all, isolated_url

from hvqeval.sample_set import SampleSetWriter
from study_app import create_app
from study_app.db import upgrade
from study_app.schema import Base

SECRET = "test-secret-key-0123456789abcdef"
CLASS_NAMES = {3: "ring (3)", 5: "square (5)", 7: "triangle (7)"}


def make_sample_set(
    path, model: str, per_class: int, classes=(3, 5, 7), size: int = 8, seed: int = 0
):
    """A sample set of random ``size``×``size`` images, ``per_class`` per class."""
    rng = np.random.default_rng(seed)
    writer = SampleSetWriter(
        path, model=model, image_size=size, seed=seed, temperature=1.0, sampler="cached"
    )
    for c in classes:
        for _ in range(per_class):
            writer.add(
                rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                c,
                CLASS_NAMES.get(c, f"c{c} ({c})"),
            )
    return writer.close()


@pytest.fixture(scope="session")
def _migrated_databases(tmp_path_factory):
    """Databases migrated once per session (Alembic): a SQLite template file that every test
    copies, and one private PostgreSQL schema that is emptied after each test and dropped at the end."""
    made: dict[str, str] = {}
    cleanups = []

    def get(database_url: str) -> str:
        if database_url not in made:
            if database_url.startswith("postgresql"):
                url, cleanup = isolated_url(database_url)
                cleanups.append(cleanup)
            else:
                url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'template.sqlite3'}"
            upgrade(url)
            dispose_all()
            made[database_url] = url
        return made[database_url]

    yield get
    dispose_all()
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def db_url(database_url, _migrated_databases):
    """A migrated, empty study database for one test (SQLite file or the session's PostgreSQL schema)."""
    template = _migrated_databases(database_url)
    if database_url.startswith("postgresql"):
        url = template
    else:
        path = make_url(database_url).database
        shutil.copyfile(make_url(template).database, path)
        url = database_url
    yield url
    dispose_all()
    if database_url.startswith("postgresql"):
        engine = create_engine(url)
        tables = ", ".join(f'"{t}"' for t in Base.metadata.tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()


@pytest.fixture
def sets(tmp_path):
    """Two generated sample sets (models 'ff' and 'msp'), 6 images for each of classes 3, 5, 7."""
    return {
        "ff": make_sample_set(tmp_path / "samples" / "ff", "tiny_ff", 6, seed=1),
        "msp": make_sample_set(tmp_path / "samples" / "msp", "tiny_msp", 6, seed=2),
    }


@pytest.fixture
def app(db_url, tmp_path):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "cache"),
            "RATE_LIMIT_RATER": "100000/60",
            "RATE_LIMIT_IP": "100000/60",
        }
    )


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
    return lambda name, model, per_class, **kw: make_sample_set(
        tmp_path / "samples" / name, model, per_class, **kw
    )
