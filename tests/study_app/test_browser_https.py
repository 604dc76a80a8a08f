"""Chromium through whole sessions over HTTPS, deployed as the README says: nginx terminating TLS
(a certificate made here for 127.0.0.1 and localhost) in front of ``study serve`` with
``HVQEVAL_HTTPS=1 HVQEVAL_PROXY_HOPS=1``. The study runs with Secure cookies, HSTS and
Flask-WTF's strict referrer check, and the browser sends only what the pages' Referrer-Policy
lets it send; an MTurk HIT shows the study in a frame of the platform's own site. Each answer
must be stored."""

from __future__ import annotations

import contextlib
import re
import urllib.parse

import pytest
from sqlalchemy import select
from study_schemas import dispose_all, engine_for, small_rating_study
from study_server import LocalServer, PlatformSite, TlsProxy, self_signed_certificate

from study_app.db import session_scope
from study_app.schema import Answer, Rater

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BEHIND_TLS = {"HVQEVAL_HTTPS": "1", "HVQEVAL_PROXY_HOPS": "1"}


def test_whole_rating_session_over_https(browser, db_url, sets, tmp_path):
    study = small_rating_study(db_url, sets, tmp_path, "secure", tasks_per_rater=3)
    dispose_all()
    cert, key = self_signed_certificate(tmp_path)
    with (
        LocalServer(
            db_url,
            str(tmp_path),
            workers=1,
            threads=2,
            env={**BEHIND_TLS, "HVQEVAL_ADMIN_PASSWORD": "admin-secret-0123"},
        ) as app,
        TlsProxy(app.url, cert, key, tmp_path) as srv,
    ):
        context = browser.new_context(ignore_https_errors=True)  # the certificate is our own
        page = context.new_page()
        failed = []
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
        page.goto(f"{srv.url}/s/{study.public_id}/?PROLIFIC_PID=secure-rater")
        page.check("input[name=agree]")
        page.click("#start")  # a form POST: refused (400) if the CSRF check finds no referrer
        for key in ("4", "2", "5"):
            page.wait_for_function(
                "() => { const b = document.querySelector('#task button.answer');"
                " return b !== null && !b.disabled; }",
                timeout=15000,
            )
            page.keyboard.press(key)  # the answers are fetch() POSTs: the same check
        page.wait_for_selector("#done", state="visible", timeout=15000)
        assert re.fullmatch(r"[0-9A-F]{12}", page.inner_text("#code"))
        cookie = next(c for c in context.cookies() if c["name"] == "session")
        assert cookie["secure"] and cookie["httpOnly"]
        assert failed == []
        context.close()
        # the admin logs in (a form POST under the same check) and sees the answers
        admin = browser.new_context(ignore_https_errors=True).new_page()
        admin.goto(f"{srv.url}/admin/login")
        admin.fill("#password", "admin-secret-0123")
        admin.click("button[type=submit]")
        admin.wait_for_selector("text=secure", timeout=15000)
        assert admin.url == f"{srv.url}/admin/"
        # 3 answers of 16 (2 models x 2 classes x 2 images, 2 raters each)
        assert re.search(r"secure\s+rating\s+open\s+3 / 16", admin.inner_text("body"))
        admin.context.close()
    with session_scope(engine_for(db_url)) as s:
        assert sorted(s.scalars(select(Answer.rating))) == [2, 4, 5]


def test_mturk_hit_in_the_platforms_frame(browser, db_url, sets, tmp_path):
    """MTurk shows the study in a frame of its own site (another site than the study's): the
    pages may be framed there, the session cookie works in the frame, and the completion form
    posts the assignment and the code to the platform."""
    with framed_hit(db_url, sets, tmp_path) as hit:
        browser_context = browser.new_context(ignore_https_errors=True)  # our own certificate
        page = browser_context.new_page()
        page.goto(hit.page_url)
        frame = page.frame_locator("iframe")
        frame.locator("input[name=agree]").check(timeout=15000)
        frame.locator("#start").click()
        for rating in ("3", "4"):
            frame.locator(f"#task button.answer[data-answer='{rating}']:enabled").click(
                timeout=15000
            )
        frame.locator("#submit-hit").click(timeout=15000)
        frame.locator("#submitted").wait_for(timeout=15000)
        browser_context.close()
    check_submitted_hit(db_url, hit.submitted, [3, 4])


@contextlib.contextmanager
def framed_hit(db_url, sets, tmp_path):
    """A 2-task rating study behind nginx (as the README deploys it) and a platform site on
    another origin whose page frames the study's MTurk link; yields the platform."""
    study = small_rating_study(db_url, sets, tmp_path, "framed", tasks_per_rater=2)
    dispose_all()
    cert, key = self_signed_certificate(tmp_path)
    with PlatformSite(cert, key) as platform:
        env = {"HVQEVAL_MTURK_SUBMIT_HOSTS": platform.origin, **BEHIND_TLS}
        with (
            LocalServer(db_url, str(tmp_path), workers=1, threads=2, env=env) as app,
            TlsProxy(app.url, cert, key, tmp_path) as srv,
        ):
            platform.frame(
                f"{srv.url}/s/{study.public_id}/?assignmentId=A1&hitId=H1&workerId=W1"
                f"&turkSubmitTo={urllib.parse.quote(platform.origin)}"
            )
            yield platform


def check_submitted_hit(db_url, submitted: list[dict], ratings: list[int]) -> None:
    """The platform got one HIT submission with the assignment and the rater's code, and the
    ratings were stored."""
    [form] = submitted
    assert form["path"] == "/mturk/externalSubmit" and form["assignmentId"] == "A1"
    with session_scope(engine_for(db_url)) as s:
        assert sorted(s.scalars(select(Answer.rating))) == ratings
        assert form["completion_code"] == s.scalar(select(Rater.completion_code))
