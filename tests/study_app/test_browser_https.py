"""Chromium through a whole rating session over HTTPS (``study serve --certfile --keyfile``, a
certificate made here for 127.0.0.1), as crowd platforms need: the study runs with Secure
cookies, HSTS and Flask-WTF's strict referrer check, and the browser sends only what the pages'
Referrer-Policy lets it send. Each answer must be stored."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from study_schemas import dispose_all, engine_for, small_rating_study
from study_server import LocalServer, self_signed_certificate

from study_app.db import session_scope
from study_app.schema import Answer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_whole_rating_session_over_https(browser, db_url, sets, tmp_path):
    study = small_rating_study(db_url, sets, tmp_path, "secure", tasks_per_rater=3)
    dispose_all()
    with LocalServer(
        db_url, str(tmp_path), workers=1, threads=2, tls=self_signed_certificate(tmp_path)
    ) as srv:
        assert srv.url.startswith("https://")
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
    with session_scope(engine_for(db_url)) as s:
        assert sorted(s.scalars(select(Answer.rating))) == [2, 4, 5]
