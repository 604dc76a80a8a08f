"""Flask-client tests of the rater pages, images, admin pages and the security rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from study_schemas import admin_app, engine_for, logged_in_admin, small_rating_study

from study_app import create_app
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import session_scope
from study_app.errors import ConfigurationError
from study_app.export import EXPORT_COLUMNS
from study_app.schema import Answer, Assignment, Rater


@pytest.fixture
def rating(db_url, sets, tmp_path):
    return small_rating_study(db_url, sets, tmp_path, "realism")


@pytest.fixture
def pairwise(db_url, sets, tmp_path):
    return create_study(
        db_url,
        StudySettings(
            name="ffvsmsp",
            kind="pairwise",
            sources=(
                SourceSpec("ff", str(sets["ff"].path)),
                SourceSpec("msp", str(sets["msp"].path)),
            ),
            classes=(3,),
            per_class=2,
            pairs_per_class=4,
            answers_per_item=2,
            tasks_per_rater=4,
        ),
        tmp_path,
    )


def _count(db_url, model):
    with session_scope(engine_for(db_url)) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_whole_rating_session_and_completion_code(rating, new_rater, db_url):
    rater = new_rater(rating.public_id, "PID-1")
    page = rater.get(f"/s/{rating.public_id}/task")
    assert page.status_code == 200 and b"history.replaceState" in page.data
    for expected_done in range(3):
        task = rater.next()
        assert task["state"] == "task" and task["done"] == expected_done and task["total"] == 3
        assert re.fullmatch(r"(ring|square) \((3|5)\)", task["label"])
        assert rater.answer(task["task"], 2 + expected_done).status_code == 200
    done = rater.next()
    assert done["state"] == "finished" and re.fullmatch(r"[0-9A-F]{12}", done["code"])
    assert rater.next()["code"] == done["code"]  # stable on reload
    assert _count(db_url, Answer) == 3


def test_the_participant_id_form_takes_a_finished_rater_to_their_code(
    rating, app, new_rater, db_url
):
    rater = new_rater(rating.public_id, "typed-back")
    while (task := rater.next())["state"] == "task":
        rater.answer(task["task"], 4)
    other = app.test_client()  # another browser: the rater types their id again
    form = other.get(f"/s/{rating.public_id}/").data
    token = re.search(rb'name="csrf_token" value="([^"]+)"', form).group(1).decode()
    typed = other.post(
        f"/s/{rating.public_id}/", data={"participant": "typed-back", "csrf_token": token}
    )
    assert typed.status_code == 302 and typed.headers["Location"].endswith("/complete")
    page = other.get(typed.headers["Location"])
    assert page.status_code == 200 and task["code"].encode() in page.data
    assert _count(db_url, Rater) == 1 and _count(db_url, Answer) == 3


def test_pairwise_task_shows_two_opaque_images_and_stores_side(pairwise, new_rater, db_url):
    rater = new_rater(pairwise.public_id, "PID-2")
    task = rater.next()
    assert len(task["images"]) == 2
    for url in task["images"]:
        # nothing but a random token and the server's signature of it
        assert re.fullmatch(r"/img/[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{27}\.png", url)
    body = str(
        {k: v for k, v in task.items() if k not in ("task", "images")}
    )  # the random ids aside
    assert "ff" not in body and "msp" not in body
    assert rater.answer(task["task"], "right").status_code == 200
    with session_scope(engine_for(db_url)) as s:
        left, choice = s.execute(select(Answer.left, Answer.choice)).one()
    assert choice == ("b" if left == "a" else "a")  # "right" is whichever model was not on the left


def test_question_and_words_for_real_images(db_url, sets, sample_set_factory, tmp_path):
    from study_app.draw import QUESTION_PAIRWISE, QUESTION_PAIRWISE_REAL

    assert QUESTION_PAIRWISE == "Which image looks the most realistic?"
    real = sample_set_factory(
        "real", "real", 6, seed=9
    )  # stands for images written from a data set
    summary = create_study(
        db_url,
        StudySettings(
            name="vsreal",
            kind="pairwise",
            sources=(
                SourceSpec("ff", str(sets["ff"].path)),
                SourceSpec("real", str(real.path), dataset="shapes"),
            ),
            classes=(3,),
            per_class=2,
            pairs_per_class=4,
        ),
        tmp_path,
    )
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "k" * 32,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "c"),
        }
    )
    client = app.test_client()
    page = client.get(f"/s/{summary.public_id}/?participant=x1", follow_redirects=True)
    assert page.status_code == 200
    assert (
        b"Real image (shapes data set)" in page.data
        and b"shapes data set, others were made" in page.data
    )
    assert b"photograph" not in page.data.lower()
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    task = client.post(
        f"/s/{summary.public_id}/consent",
        data={"agree": "yes", "csrf_token": csrf},
        follow_redirects=True,
    )
    assert QUESTION_PAIRWISE_REAL.encode() in task.data.replace(b"&#34;", b'"')


def test_a_study_without_real_images_never_mentions_photographs_or_real_images(pairwise, new_rater):
    rater = new_rater(pairwise.public_id, "words")
    page = rater.get(f"/s/{pairwise.public_id}/consent")
    assert page.status_code == 200 and b"made by computer programs" in page.data
    assert b"photo" not in page.data.lower() and b"Real image" not in page.data


def test_images_are_512_bilinear_and_only_for_their_rater(rating, new_rater, app):
    from io import BytesIO

    from PIL import Image as PILImage

    owner = new_rater(rating.public_id, "owner")
    url = owner.next()["images"][0]
    response = owner.client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert PILImage.open(BytesIO(response.data)).size == (512, 512)
    other = new_rater(rating.public_id, "other")
    assert other.client.get(url).status_code == 404  # not one of other's tasks
    assert app.test_client().get(url).status_code == 403  # no session at all
    token, signature = url.removeprefix("/img/").removesuffix(".png").split(".")
    # (the first character: the last of 27 base64 characters also holds 2 unused bits)
    forged = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert owner.client.get(f"/img/{token}.{forged}.png").status_code == 404
    assert owner.client.get(f"/img/{token}.png").status_code == 404  # the bare token: admin only
    # a signature is for its own token only
    other_token = other.next()["images"][0].removeprefix("/img/").split(".")[0]
    assert owner.client.get(f"/img/{other_token}.{signature}.png").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/img/..%2F..%2Fetc%2Fpasswd.png",
        "/img/../../etc/passwd.png",
        "/img/%2e%2e%2fmanifest.json.png",
        "/img/AAAAAAAAAAAAAAAAAAAAAA.png",
        "/static/../study_app/models.py",
    ],
)
def test_no_path_traversal(rating, new_rater, path):
    rater = new_rater(rating.public_id, "walker")
    assert rater.client.get(path).status_code in (403, 404)


def test_bad_answers_are_4xx_and_store_nothing(rating, new_rater, db_url):
    rater = new_rater(rating.public_id, "fuzz")
    task = rater.next()["task"]
    bad_bodies = [
        {"task": task, "answer": 7, "response_ms": 5},
        {"task": task, "answer": "left", "response_ms": 5},
        {"task": task, "answer": 3, "response_ms": -1},
        {"task": task, "answer": 3, "response_ms": "fast"},
        {"task": task, "answer": 3},
        {"task": "x" * 22, "answer": 3, "response_ms": 5},
        {"task": None, "answer": 3, "response_ms": 5},
        {"task": task, "answer": "unknown", "reason": "<script>", "response_ms": 5},
        {"task": {"$ne": 1}, "answer": 3, "response_ms": 5},
    ]
    for body in bad_bodies:
        response = rater.api("answer", body)
        assert 400 <= response.status_code < 500, (body, response.status_code)
        assert "error" in response.get_json()
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe", b'{"task": '):
        response = rater.client.post(
            f"/s/{rating.public_id}/api/answer",
            data=raw,
            headers={"X-CSRFToken": rater.csrf, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
    assert _count(db_url, Answer) == 0


def test_forged_and_replayed_posts_are_rejected(rating, new_rater, app, db_url):
    rater = new_rater(rating.public_id, "victim")
    task = rater.next()["task"]
    forged = rater.api("answer", {"task": task, "answer": 3, "response_ms": 5}, csrf=False)
    assert forged.status_code == 400  # no CSRF token
    wrong = rater.client.post(
        f"/s/{rating.public_id}/api/answer",
        json={"task": task, "answer": 3, "response_ms": 5},
        headers={"X-CSRFToken": "forged"},
    )
    assert wrong.status_code == 400
    attacker = new_rater(
        rating.public_id, "attacker"
    )  # valid session and token, someone else's task
    assert attacker.answer(task, 1).status_code == 404
    assert _count(db_url, Answer) == 0
    assert rater.answer(task, 3).status_code == 200
    assert rater.answer(task, 3).status_code == 409  # replay
    assert _count(db_url, Answer) == 1
    fresh = app.test_client()  # no session: cannot use the API at all
    assert fresh.post(f"/s/{rating.public_id}/api/next").status_code == 400  # CSRF first


def test_unknown_answers_are_stored_with_reason(pairwise, new_rater, db_url):
    rater = new_rater(pairwise.public_id, "unsure")
    task = rater.next()["task"]
    assert rater.answer(task, "unknown", reason="image-failed").status_code == 200
    with session_scope(engine_for(db_url)) as s:
        assert s.execute(select(Answer.choice, Answer.unknown_reason, Answer.rating)).one() == (
            "unknown",
            "image-failed",
            None,
        )


def test_entry_needs_a_participant_id_and_consent(rating, app, db_url):
    client = app.test_client()
    assert client.get("/s/not-a-real-study-id/").status_code == 404
    form = client.get(f"/s/{rating.public_id}/")
    assert form.status_code == 200 and b'name="participant"' in form.data
    assert client.get(f"/s/{rating.public_id}/?workerId=../../bad").status_code == 400
    assert client.get(f"/s/{rating.public_id}/task").status_code == 403  # no session yet
    # a platform's link shows the instructions and the consent form at once (no redirect)
    entered = client.get(f"/s/{rating.public_id}/?workerId=W123", follow_redirects=False)
    assert entered.status_code == 200 and b"ignore blur and other scaling artifacts" in entered.data
    assert f'action="/s/{rating.public_id}/consent"'.encode() in entered.data
    assert client.get(f"/s/{rating.public_id}/task").status_code == 302  # consent first
    page = client.get(f"/s/{rating.public_id}/consent")
    assert b"ignore blur and other scaling artifacts" in page.data
    # the participant-id form posts, then redirects to the instructions (post/redirect/get)
    other = app.test_client()
    form = other.get(f"/s/{rating.public_id}/").data
    token = re.search(rb'name="csrf_token" value="([^"]+)"', form).group(1).decode()
    typed = other.post(
        f"/s/{rating.public_id}/", data={"participant": "typed-1", "csrf_token": token}
    )
    assert typed.status_code == 302 and typed.headers["Location"].endswith("/consent")
    with session_scope(engine_for(db_url)) as s:
        assert s.scalars(select(Rater.participant).order_by(Rater.id)).all() == ["W123", "typed-1"]


def test_agreeing_answers_with_the_task_page_and_its_first_task(rating, app, db_url):
    """The consent form's POST is answered with the task page itself (no redirect: one round
    trip less before the first task), consent stored in the same transaction; the page names
    its own address for the script to show, and a repeated POST or a reload shows the same
    task (nothing claimed twice)."""
    client = app.test_client()
    entered = client.get(f"/s/{rating.public_id}/?PROLIFIC_PID=agreeing")
    csrf = re.search(rb'name="csrf-token" content="([^"]+)"', entered.data).group(1).decode()
    agreed = client.post(
        f"/s/{rating.public_id}/consent", data={"agree": "yes", "csrf_token": csrf}
    )
    assert agreed.status_code == 200 and "Location" not in agreed.headers
    first = re.search(rb'id="first-task">(.*?)</script>', agreed.data).group(1)
    assert f'data-page="/s/{rating.public_id}/task"'.encode() in agreed.data
    with session_scope(engine_for(db_url), read_only=True) as s:
        rater = s.scalars(select(Rater).where(Rater.participant == "agreeing")).one()
        assert rater.consented_at is not None
        assert (
            s.scalar(select(func.count(Assignment.id)).where(Assignment.rater_id == rater.id)) == 1
        )
    again = client.post(f"/s/{rating.public_id}/consent", data={"agree": "yes", "csrf_token": csrf})
    reloaded = client.get(f"/s/{rating.public_id}/task")
    for page in (again, reloaded):
        assert re.search(rb'id="first-task">(.*?)</script>', page.data).group(1) == first
    with session_scope(engine_for(db_url), read_only=True) as s:
        assert (
            s.scalar(select(func.count(Assignment.id)).where(Assignment.rater_id == rater.id)) == 1
        )
    # not agreeing stores nothing and shows no task
    other = app.test_client()
    entered = other.get(f"/s/{rating.public_id}/?PROLIFIC_PID=hesitant")
    csrf = re.search(rb'name="csrf-token" content="([^"]+)"', entered.data).group(1).decode()
    refused = other.post(f"/s/{rating.public_id}/consent", data={"csrf_token": csrf})
    assert refused.status_code == 400 and b"first-task" not in refused.data
    with session_scope(engine_for(db_url), read_only=True) as s:
        hesitant = s.scalars(select(Rater).where(Rater.participant == "hesitant")).one()
        assert hesitant.consented_at is None


def test_security_headers_and_cookie_flags(rating, app):
    client = app.test_client()
    response = client.get(f"/s/{rating.public_id}/?PROLIFIC_PID=abc")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get(f"/s/{rating.public_id}/consent")
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
        assert name in page.headers
    assert "script-src 'sha256-" in page.headers["Content-Security-Policy"]
    # a rater's pages may be framed by MTurk (an ExternalQuestion HIT) and nobody else; the
    # admin's by nobody. (X-Frame-Options cannot name MTurk: the framed pages send none.)
    assert (
        "frame-ancestors 'self' https://workersandbox.mturk.com https://www.mturk.com"
        in page.headers["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in page.headers
    admin = client.get("/admin/login")
    assert "frame-ancestors 'none'" in admin.headers["Content-Security-Policy"]
    assert admin.headers["X-Frame-Options"] == "DENY"
    # the referrer stays on this site (the entry link holds the participant id)
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"


def test_over_https_the_session_cookie_works_in_a_platforms_frame(rating, db_url, tmp_path):
    """Behind TLS the session cookie is Secure, SameSite=None and Partitioned: MTurk shows the
    study in a frame of its own site, where a browser withholds SameSite=Lax cookies (the
    Chromium test of an MTurk HIT runs it through)."""
    app = create_app(
        {
            "SECRET_KEY": "s" * 32,
            "DATABASE_URL": db_url,
            "INSTANCE_DIR": str(tmp_path),
            "HTTPS": True,
        }
    )
    response = app.test_client().get(
        f"/s/{rating.public_id}/?PROLIFIC_PID=framed", base_url="https://study.example.org"
    )
    flags = {part.strip() for part in response.headers["Set-Cookie"].split(";")[1:]}
    assert {"Secure", "HttpOnly", "SameSite=None", "Partitioned"} <= flags
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_pages_carry_their_stylesheet_script_and_icon(rating, app, tmp_path):
    """A rater comes once, so the pages carry the stylesheet, the task page's script and the
    icon (no request for a file before the page shows), and the Content-Security-Policy admits
    exactly that stylesheet and script by their hashes, no other inline code."""
    import base64

    from study_app.page_assets import FOLDER, csp_hash, load_page_assets

    client = app.test_client()
    consent = client.get(f"/s/{rating.public_id}/?PROLIFIC_PID=inline")
    csrf = re.search(rb'name="csrf-token" content="([^"]+)"', consent.data).group(1).decode()
    client.post(f"/s/{rating.public_id}/consent", data={"agree": "yes", "csrf_token": csrf})
    task = client.get(f"/s/{rating.public_id}/task")
    for page in (consent, task):
        html = page.data.decode()
        policy = page.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in policy
        assert '<link rel="stylesheet"' not in html and "<script src" not in html
        (css,) = re.findall(r"<style>(.*?)</style>", html, re.S)
        assert css == (FOLDER / "study.css").read_text()
        assert f"style-src {csp_hash(css)};" in policy
        # the icon is a data: URL (else a browser asks for /favicon.ico on every page: a 404)
        icon = re.search(r'<link rel="icon" href="data:image/svg\+xml;base64,([^"]+)"', html)
        assert base64.b64decode(icon.group(1)) == (FOLDER / "favicon.svg").read_bytes()
        assert "img-src 'self' data:;" in policy
    (script,) = re.findall(r"<script>(.*?)</script>", task.data.decode(), re.S)
    assert script == (FOLDER / "rater.js").read_text()
    assert f"script-src {csp_hash(script)};" in task.headers["Content-Security-Policy"]
    # the same policy on the admin's pages, which are framed by no one
    admin = client.get("/admin/login").headers["Content-Security-Policy"]
    assert f"script-src {csp_hash(script)};" in admin and "frame-ancestors 'none'" in admin
    # the hash is the standard one (CSP Level 2: base64 of the SHA-256 of the UTF-8 text)
    assert csp_hash("alert('Hello, world.');") == (
        "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
    )
    # no file route: nothing is served from the static folder
    assert client.get("/static/study.css").status_code == 404
    # a file that would end the element early is refused when the app is made
    for name in ("study.css", "rater.js", "favicon.svg"):
        (tmp_path / name).write_text((FOLDER / name).read_text())
    (tmp_path / "rater.js").write_text("let s = '</SCRIPT>';")
    with pytest.raises(ValueError, match="rater.js contains '</script'"):
        load_page_assets(tmp_path)


def test_rate_limit_per_rater_and_per_ip(rating, db_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "s" * 32,
            "DATABASE_URL": db_url,
            "IMAGE_CACHE_DIR": str(tmp_path / "c"),
            "RATE_LIMIT_RATER": "5/60",
            "RATE_LIMIT_IP": "12/60",
        }
    )
    client = app.test_client()
    page = client.get(f"/s/{rating.public_id}/?PROLIFIC_PID=speedy", follow_redirects=True)
    csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page.data).group(1).decode()
    client.post(f"/s/{rating.public_id}/consent", data={"agree": "yes", "csrf_token": csrf})
    responses = [
        client.post(f"/s/{rating.public_id}/api/next", headers={"X-CSRFToken": csrf})
        for _ in range(7)
    ]
    codes = [r.status_code for r in responses]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]  # 5 API calls per rater per minute
    # only a refusal says when to come back; no limit headers on the answers let through
    assert not any(
        name.startswith("X-RateLimit") or name == "Retry-After"
        for r in responses[:5]
        for name in r.headers.keys()
    )
    assert (
        0 < int(responses[-1].headers["Retry-After"]) <= 60
        and "slow down" in responses[-1].get_json()["error"]
    )
    other = app.test_client()
    pages = [other.get(f"/s/{rating.public_id}/") for _ in range(12)]
    codes = [r.status_code for r in pages]
    # Pages count against the address (12 a minute); API calls count against the rater instead.
    assert codes[:9] == [200] * 9 and codes[-1] == 429
    assert "Retry-After" not in pages[0].headers and 0 < int(pages[-1].headers["Retry-After"]) <= 60


def test_admin_login_progress_close_and_export(rating, new_rater, db_url, tmp_path):
    app = admin_app(db_url, tmp_path / "c")
    rater_client = new_rater(rating.public_id, "R1")
    task = rater_client.next()
    rater_client.answer(task["task"], 5)
    admin = app.test_client()
    assert admin.get("/admin/").status_code == 302
    assert admin.get("/admin/study/realism/export.csv").status_code == 302
    login = admin.get("/admin/login")
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', login.data).group(1).decode()
    assert (
        admin.post("/admin/login", data={"password": "wrong", "csrf_token": csrf}).status_code
        == 401
    )
    assert (
        admin.post("/admin/login", data={"password": "hunter22"}).status_code == 400
    )  # no CSRF token
    assert (
        admin.post("/admin/login", data={"password": "hunter22", "csrf_token": csrf}).status_code
        == 302
    )
    overview = admin.get("/admin/")
    assert b"realism" in overview.data and b"1 / 16" in overview.data  # 8 images x k=2
    detail = admin.get("/admin/study/realism")
    assert (
        detail.status_code == 200
        and b"ring (3)" in detail.data
        and rating.public_id.encode() in detail.data
    )
    csrf = re.search(rb'name="csrf-token" content="([^"]+)"', detail.data).group(1).decode()
    assert (
        admin.post(
            "/admin/study/realism/status", data={"status": "closed", "csrf_token": csrf}
        ).status_code
        == 302
    )
    open_task = rater_client.next()
    assert (
        open_task["state"] == "task"
    )  # handed out (with the last reply) before closing: still answerable
    assert (
        rater_client.answer(open_task["task"], 1).get_json()["next"]["state"] == "finished"
    )  # no new tasks
    newcomer = app.test_client()
    assert newcomer.get(f"/s/{rating.public_id}/").status_code == 403
    csv_text = admin.get("/admin/study/realism/export.csv").data.decode()
    header, first, second = csv_text.splitlines()
    assert header == ",".join(EXPORT_COLUMNS)
    assert first.startswith("realism,rating,R1,") and ",a,5,,," in first and ",a,1,,," in second


def test_admin_pages_are_off_without_a_password(rating, app):
    assert app.config["ADMIN_PASSWORD_HASH"] is None or app.config["ADMIN_PASSWORD_HASH"]
    app.config["ADMIN_PASSWORD_HASH"] = None
    assert app.test_client().get("/admin/login").status_code == 404


def test_production_refuses_to_start_without_secret_key(monkeypatch, db_url):
    with pytest.raises(ConfigurationError, match="HVQEVAL_SECRET_KEY"):
        create_app({"DATABASE_URL": db_url})
    with pytest.raises(ConfigurationError, match="too short"):
        create_app({"DATABASE_URL": db_url, "SECRET_KEY": "short"})
    assert (
        create_app({"DATABASE_URL": db_url, "SECRET_KEY": "x" * 40}).config["SECRET_KEY"]
        == "x" * 40
    )


def test_create_app_takes_its_settings_from_its_argument_not_the_environment(monkeypatch, db_url):
    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "e" * 40)
    monkeypatch.setenv("HVQEVAL_RATE_LIMIT_RATER", "lots")
    with pytest.raises(ConfigurationError, match="secret key"):
        create_app({"DATABASE_URL": db_url})  # the environment is the CLI's to read
    app = create_app({"DATABASE_URL": db_url, "SECRET_KEY": "x" * 40})
    assert app.config["SECRET_KEY"] == "x" * 40 and app.config["RATE_LIMIT_RATER"] == "240/60"


@pytest.mark.parametrize(
    "setting, value",
    [
        ("RATE_LIMIT_RATER", "lots"),
        ("RATE_LIMIT_IP", "0/60"),
        ("RATE_LIMIT_STORAGE", "memcached://x"),
        ("PROXY_HOPS", "two"),
        ("HTTPS", "yes"),
    ],
)
def test_every_bad_setting_is_one_configuration_error_line(db_url, setting, value):
    with pytest.raises(ConfigurationError) as err:
        create_app({"DATABASE_URL": db_url, "SECRET_KEY": "x" * 40, setting: value})
    assert "\n" not in str(err.value) and repr(value)[1:-1] in str(err.value)


@pytest.mark.parametrize("value", ["garbage", "scrypt$salt$not-hex", "admin-password-in-clear"])
def test_an_admin_password_hash_that_is_none_is_refused_at_start_up(db_url, value):
    """It would refuse every admin login while the server looked healthy."""
    from werkzeug.security import generate_password_hash

    settings = {"DATABASE_URL": db_url, "SECRET_KEY": "x" * 40}
    with pytest.raises(ConfigurationError, match="HVQEVAL_ADMIN_PASSWORD_HASH") as err:
        create_app({**settings, "ADMIN_PASSWORD_HASH": value})
    assert "\n" not in str(err.value) and value not in str(err.value)
    for method in ("scrypt", "pbkdf2"):
        good = generate_password_hash("long-enough-1", method=method)
        assert create_app({**settings, "ADMIN_PASSWORD_HASH": good}).config["ADMIN_PASSWORD_HASH"]


def test_a_short_admin_password_is_one_line_in_serve_and_hash_password(db_url, monkeypatch):
    from click.testing import CliRunner

    from hvqeval.cli import cli

    monkeypatch.setenv("HVQEVAL_SECRET_KEY", "k" * 32)
    monkeypatch.delenv("HVQEVAL_ADMIN_PASSWORD_HASH", raising=False)
    monkeypatch.setenv("HVQEVAL_ADMIN_PASSWORD", "x")
    served = CliRunner().invoke(cli, ["study", "serve", "--database-url", db_url])
    assert served.exit_code == 1 and served.output.count("\n") == 1, served.output
    assert "HVQEVAL_ADMIN_PASSWORD: use at least 8 characters" in served.output
    hashed = CliRunner().invoke(cli, ["study", "hash-password"], input="short\nshort\n")
    assert hashed.exit_code == 1 and "use at least 8 characters" in hashed.output
    assert "$" not in hashed.output  # no hash printed


def test_healthz_says_whether_the_database_is_current(app, db_url, monkeypatch):
    from alembic.script import ScriptDirectory

    from study_app.db import downgrade, head_revision

    # the migration scripts are read when the app is made, not on every probe
    read = []
    from_config = ScriptDirectory.from_config
    monkeypatch.setattr(
        ScriptDirectory, "from_config", lambda *a, **k: read.append(1) or from_config(*a, **k)
    )
    for _ in range(3):
        ok = app.test_client().get("/healthz")
        assert ok.status_code == 200 and ok.get_json()["status"] == "ok"
    assert read == []
    monkeypatch.undo()
    downgrade(db_url, "0002")
    stale = app.test_client().get("/healthz")
    assert stale.status_code == 503
    assert f"needs {head_revision()}" in stale.get_json()["reason"]


def test_a_database_that_cannot_be_reached_is_a_503_that_shows_no_details(tmp_path, caplog):
    """/healthz says unavailable without the database's user, host or name (those go to the
    log); a rater's page and API answer 503 with Retry-After ("try again"), not a 500."""
    gone = "postgresql+psycopg://studyowner@127.0.0.1:1/hidden_study_db"
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "k" * 32,
            "DATABASE_URL": gone,
            "IMAGE_CACHE_DIR": str(tmp_path / "cache"),
            "WTF_CSRF_ENABLED": False,  # the API call below reaches the database
        }
    )
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
    assert not any(word in health.data for word in (b"studyowner", b"127.0.0.1", b"hidden_study"))
    assert "hidden_study_db" in caplog.text  # the operator still learns why
    page = client.get("/s/some-study-link/?PROLIFIC_PID=p1")
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert b"try again" in page.data and b"hidden_study" not in page.data
    with client.session_transaction() as session:
        session.update(public_id="some-study-link", rater_id=1)
    api = client.post("/s/some-study-link/api/next")
    assert api.status_code == 503 and "try again" in api.get_json()["error"]


def test_nothing_is_stored_for_assignments_after_bad_requests(rating, new_rater, db_url):
    rater = new_rater(rating.public_id, "counter")
    rater.next()
    assert _count(db_url, Assignment) == 1
    assert (
        rater.client.get(f"/s/{rating.public_id}/api/next").status_code == 405
    )  # claims need a POST
    assert _count(db_url, Assignment) == 1


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    answer=json_values,
    reason=json_values,
    response_ms=json_values,
    use_real_task=st.booleans(),
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)
def test_no_request_body_causes_a_server_error(
    rating, new_rater, db_url, answer, reason, response_ms, use_real_task, extra
):
    rater = new_rater(rating.public_id, "fuzzer")
    task = rater.next()
    body = {
        **extra,
        "task": task.get("task") if use_real_task else answer,
        "answer": answer,
        "reason": reason,
        "response_ms": response_ms,
    }
    response = rater.api("answer", body)
    assert response.status_code in (200, 400, 404, 409), response.status_code
    stored = _count(db_url, Answer)
    assert stored <= 3  # tasks_per_rater; nothing beyond what the rater may answer
    if response.status_code == 200:
        assert type(response_ms) is int and 0 <= response_ms


def test_served_images_are_the_bilinear_upscale_not_nearest(rating, new_rater, db_url):
    """Appendix G: "upscaled to 512×512 using bilinear interpolation"."""
    from io import BytesIO

    import numpy as np
    from PIL import Image as PILImage

    from study_app.schema import Image, Source

    rater = new_rater(rating.public_id, "looker")
    url = rater.next()["images"][0]
    token = url.rsplit("/", 1)[1].split(".")[0]  # token.signature.png
    with session_scope(engine_for(db_url)) as s:
        file, folder = s.execute(
            select(Image.file, Source.path)
            .join(Source, Source.id == Image.source_id)
            .where(Image.token == token)
        ).one()
    served = np.asarray(
        PILImage.open(BytesIO(rater.client.get(url).data)).convert("RGB")
    )  # (512, 512, 3)
    with PILImage.open(Path(folder) / file) as original:
        bilinear = np.asarray(
            original.convert("RGB").resize((512, 512), PILImage.Resampling.BILINEAR)
        )
        nearest = np.asarray(
            original.convert("RGB").resize((512, 512), PILImage.Resampling.NEAREST)
        )
    assert served.shape == (512, 512, 3) and np.array_equal(served, bilinear)
    assert not np.array_equal(served, nearest)  # random 8x8 images: the two upscales differ


def test_pairwise_side_of_a_is_drawn_from_the_study_seed_and_both_sides_occur(
    db_url, sets, tmp_path, new_rater
):
    from study_app.handout import side_of_a
    from study_app.schema import Image, Item, Study

    summary = create_study(
        db_url,
        StudySettings(
            name="sides",
            kind="pairwise",
            sources=(
                SourceSpec("ff", str(sets["ff"].path)),
                SourceSpec("msp", str(sets["msp"].path)),
            ),
            classes=(3, 5, 7),
            per_class=4,
            pairs_per_class=8,
            answers_per_item=2,
            tasks_per_rater=6,
            seed=11,
        ),
        tmp_path,
    )
    shown = {}  # task token -> (participant, image tokens in display order)
    for i in range(4):
        rater = new_rater(summary.public_id, f"side{i}")
        for _ in range(6):
            task = rater.next()
            shown[task["task"]] = (
                f"side{i}",
                [u.rsplit("/", 1)[1].split(".")[0] for u in task["images"]],
            )
            assert rater.answer(task["task"], "left").status_code == 200
    with session_scope(engine_for(db_url)) as s:
        study = s.scalar(select(Study).where(Study.name == "sides"))
        s.expunge(study)
        handed = s.execute(
            select(Assignment.token, Assignment.left, Item.number, Image.token)
            .join(Item, Item.id == Assignment.item_id)
            .join(Image, Image.id == Item.image_a_id)
        ).all()
        lefts = s.execute(select(Answer.left, Answer.choice)).all()
    assert len(handed) == len(shown) == 24
    for task, left, number, token_a in handed:
        participant, display = shown[task]
        assert (display[0] == token_a) == (left == "a")  # the page shows A where the database says
        assert side_of_a(study, number, participant) == left  # drawn from the seed, item and rater
    assert {left for _, left, _, _ in handed} == {
        "a",
        "b",
    }  # A on the left in some tasks, right in others
    assert all(
        left == choice for left, choice in lefts
    )  # "left" chose whichever model was on the left
    study.seed = 12  # another seed draws other sides for the same raters and items
    assert any(side_of_a(study, number, shown[task][0]) != left for task, left, number, _ in handed)


def test_visitors_who_never_consent_are_not_counted_as_raters(rating, new_rater, db_url, tmp_path):
    """Opening a crowd link stores the participant (a reload finds them again), but until they
    consent they are visitors: `study list`, its JSON and the admin page count them apart."""
    import json

    from click.testing import CliRunner

    from hvqeval.cli import cli

    new_rater(rating.public_id, "consented")
    app = admin_app(db_url, tmp_path / "c")
    for participant in ("only-looked", "looked-twice", "looked-twice"):
        page = app.test_client().get(f"/s/{rating.public_id}/?PROLIFIC_PID={participant}")
        assert page.status_code == 200 and b"consent" in page.data.lower()

    listed = CliRunner().invoke(cli, ["study", "list", "--json", "--database-url", db_url])
    [progress] = json.loads(listed.output)
    assert (progress["raters"], progress["visitors"]) == (1, 2)
    text = CliRunner().invoke(cli, ["study", "list", "--database-url", db_url]).output
    assert "1 rater, 2 more opened the link without consenting" in text
    # every rater's code: the visitors are none of them; a platform's list may still name one
    codes = CliRunner().invoke(cli, ["study", "codes", "realism", "--database-url", db_url])
    assert [line.split("\t")[0] for line in codes.output.splitlines()[1:]] == ["consented"]
    pasted = tmp_path / "submissions.csv"
    pasted.write_text("participant_id,completion_code\nonly-looked,ABC\n")
    checked = CliRunner().invoke(
        cli,
        ["study", "codes", "realism", "--check", str(pasted), "--json", "--database-url", db_url],
    )
    [mismatch] = json.loads(checked.output)["mismatches"]
    assert (mismatch["participant"], mismatch["problem"]) == (
        "only-looked",
        "opened the link, never consented",
    )

    detail = logged_in_admin(app, "hunter22").get("/admin/study/realism").data.decode()
    assert "raters (gave consent): 1," in detail and "2 more opened the link" in detail
