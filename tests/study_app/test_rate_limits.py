"""Rate limits kept by Flask-Limiter: per server process with ``memory://``, shared by all
workers with ``redis://`` (two app instances stand for two gunicorn workers), a bad
HVQEVAL_RATE_LIMIT_STORAGE refused at start-up in one line, and a Redis that fails while
serving never turning a rater's request into an error."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import pytest
from click.testing import CliRunner
from study_schemas import small_rating_study

from hvqeval.cli import cli
from study_app import create_app
from study_app.errors import ConfigurationError
from study_app.settings import check_rate_limit_storage, parse_rate
from study_app.web import TOO_MANY_REQUESTS

SECRET = "rate-limit-test-secret-0123456789"
REDIS_URL = (
    "redis://127.0.0.1:6379/15"  # the tests' own database: emptied before and after each test
)


@pytest.fixture
def study(db_url, sets, tmp_path):
    return small_rating_study(db_url, sets, tmp_path, "limits")


class Rater:
    """A test client that went through entry and consent and posts to the JSON API like rater.js."""

    def __init__(self, client, public_id: str):
        self.client, self.public_id, self.csrf = client, public_id, None

    def enter(self, participant: str) -> Rater:
        page = self.client.get(
            f"/s/{self.public_id}/?PROLIFIC_PID={participant}", follow_redirects=True
        )
        self.csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page.data).group(1).decode()
        consent = self.client.post(
            f"/s/{self.public_id}/consent", data={"agree": "yes", "csrf_token": self.csrf}
        )
        assert consent.status_code in (200, 302), consent.data
        return self

    def api(self, name: str):
        return self.client.post(
            f"/s/{self.public_id}/api/{name}", json={}, headers={"X-CSRFToken": self.csrf}
        )


@pytest.fixture
def redis_db():
    """A client of Redis database 15 on 127.0.0.1:6379, emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Redis not reachable at 127.0.0.1:6379 ({exc}); start it with "
            "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''`"
        )
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _app(db_url, tmp_path, storage: str, rater_rate: str = "5/60"):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "cache"),
            "RATE_LIMIT_RATER": rater_rate,
            "RATE_LIMIT_IP": "100000/60",
            "RATE_LIMIT_STORAGE": storage,
        }
    )


def _one_rater_on_two_workers(app_a, app_b, public_id: str) -> tuple[Rater, Rater]:
    """The same rater (session cookie and CSRF token) talking to two app instances, as a rater
    whose requests a load balancer spreads over two workers."""
    on_a = Rater(app_a.test_client(), public_id).enter("worker-hopper")
    on_b = Rater(app_b.test_client(), public_id)
    on_b.client.set_cookie("session", on_a.client.get_cookie("session").value)
    on_b.csrf = on_a.csrf
    return on_a, on_b


def _assert_normal_429(response):
    assert response.status_code == 429
    body = response.get_json()
    assert body == {"error": TOO_MANY_REQUESTS} and "\n" not in body["error"]


def test_memory_storage_counts_in_each_app_separately(study, db_url, tmp_path):
    app_a, app_b = (_app(db_url, tmp_path, "memory://") for _ in range(2))
    on_a, on_b = _one_rater_on_two_workers(app_a, app_b, study.public_id)
    codes_a = [on_a.api("next").status_code for _ in range(6)]
    assert codes_a == [200] * 5 + [429]
    codes_b = [on_b.api("next").status_code for _ in range(6)]
    assert codes_b == [200] * 5 + [429]  # the other worker's counter starts afresh: 2 x 5 in all
    _assert_normal_429(on_b.api("next"))


def test_redis_storage_shares_one_limit_between_apps(study, db_url, tmp_path, redis_db):
    app_a, app_b = (_app(db_url, tmp_path, REDIS_URL) for _ in range(2))
    on_a, on_b = _one_rater_on_two_workers(app_a, app_b, study.public_id)
    replies = [(on_a if i % 2 == 0 else on_b).api("next") for i in range(8)]
    assert [r.status_code for r in replies] == [200] * 5 + [
        429
    ] * 3  # 5 per minute, both workers together
    _assert_normal_429(replies[5])  # answered by app B
    _assert_normal_429(replies[6])  # answered by app A
    assert any(b"rater-" in key for key in redis_db.keys("LIMITS*")), (
        "the rater's counter should be in Redis"
    )


def test_redis_storage_counts_admin_logins_across_apps(db_url, tmp_path, redis_db):
    from werkzeug.security import generate_password_hash

    apps = [
        create_app(
            {
                "TESTING": True,
                "SECRET_KEY": SECRET,
                "DATABASE_URL": db_url,
                "IMAGE_CACHE_DIR": str(tmp_path / "cache"),
                "RATE_LIMIT_STORAGE": REDIS_URL,
                "WTF_CSRF_ENABLED": False,
                "ADMIN_PASSWORD_HASH": generate_password_hash("right", method="pbkdf2:sha256:1000"),
            }
        )
        for _ in range(2)
    ]
    codes = [
        apps[i % 2].test_client().post("/admin/login", data={"password": "wrong"}).status_code
        for i in range(12)
    ]
    assert codes == [401] * 10 + [429, 429]  # 10 attempts a minute per address, over both workers


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("nosuch://127.0.0.1", "use memory://"),
        ("redis://127.0.0.1:notaport/0", "HVQEVAL_RATE_LIMIT_STORAGE"),
        ("redis://127.0.0.1:1/0", "start it"),
        ("async+memory://", "use memory://"),
    ],
)
def test_serve_refuses_a_bad_storage_in_one_line_before_serving(db_url, monkeypatch, uri, reason):
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("HVQEVAL_RATE_LIMIT_STORAGE", uri)
    result = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert (
        result.output.startswith(f"Error: HVQEVAL_RATE_LIMIT_STORAGE={uri!r}")
        and reason in result.output
    )
    assert result.output.count("\n") == 1 and "serving" not in result.output


@pytest.mark.parametrize(
    "uri", ["redis://:hunter2hunter2@127.0.0.1:1/0", "rediz://:hunter2hunter2@127.0.0.1/0"]
)
def test_storage_password_is_never_shown(uri):
    with pytest.raises(ConfigurationError) as raised:
        check_rate_limit_storage(uri) if uri.startswith("redis:") else create_app(
            {"TESTING": True, "DATABASE_URL": "sqlite://", "RATE_LIMIT_STORAGE": uri}
        )
    message = str(raised.value)
    assert (
        "HVQEVAL_RATE_LIMIT_STORAGE" in message and "hunter2" not in message and "\n" not in message
    )


@pytest.mark.parametrize("text", ["5/0.5", "0/60", "5/0", "many/60"])
def test_bad_rates_name_their_setting(text):
    with pytest.raises(ConfigurationError, match="HVQEVAL_RATE_LIMIT_RATER="):
        parse_rate(text, "HVQEVAL_RATE_LIMIT_RATER")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_failing_while_serving_lets_raters_through(study, db_url, tmp_path):
    """A private Redis server is stopped under a running app: requests still succeed (Flask-Limiter
    swallows the storage error and logs it), never a 500."""
    import redis

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        app = _app(db_url, tmp_path, f"redis://127.0.0.1:{port}/0", rater_rate="3/60")
        rater = Rater(app.test_client(), study.public_id).enter("unlucky")
        assert [rater.api("next").status_code for _ in range(4)] == [200, 200, 200, 429]
    finally:
        server.terminate()
        server.wait(timeout=10)
    codes = [rater.api("next").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
