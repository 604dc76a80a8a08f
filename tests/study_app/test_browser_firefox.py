"""Firefox (Debian's firefox-esr, driven through its Marionette protocol by Mozilla's
``marionette_driver`` client) through a whole rating session on a desktop-sized window and a
whole pairwise session on a phone-sized one, against the production server, with clicks, taps
and keys. Screenshots go to the artifacts folder; when a test fails, its last screenshot, the
page's HTML and Firefox's console log go to ``artifacts/firefox-failures/<test>/`` (the path
is printed).

Waiting: every wait polls a condition that is safe to evaluate on *any* page (a click that
starts a navigation returns before the next page exists, and a script run on the old page
or during the switch must read as "not yet", not fail), and the window size is polled until
the page's viewport has taken it (headless Firefox resizes asynchronously)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from study_schemas import engine_for
from test_browser import server  # noqa: F401  (module-scoped production server with a rating and a pairwise study)

from study_app.db import session_scope
from study_app.schema import Answer, Rater, Study

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Written to the fresh profile's user.js: a quiet browser that asks for nothing and calls no
# one (no updates, telemetry, first-run pages or background services), Marionette on a port the
# system picks (Firefox writes it to MarionetteActivePort in the profile), and the profile's
# userChrome.css honoured (see PHONE_CHROME_CSS).
FIREFOX_PREFS = {
    "marionette.port": 0,
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.tabs.warnOnClose": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "toolkit.legacyUserProfileCustomizations.stylesheets": True,
    # The page's console messages and script errors go to Firefox's stdout (firefox.log), which
    # is kept with the screenshot when a test fails.
    "devtools.console.stdout.content": True,
    "browser.dom.window.dump.enabled": True,
}
# Firefox's toolbars keep a desktop window at least 500 px wide; without their minimum widths
# the window (and so the page's viewport) can be as narrow as a phone's screen.
PHONE_CHROME_CSS = (
    ":root, #main-window, #navigator-toolbox, toolbar, #nav-bar, #urlbar-container, #urlbar,"
    " #TabsToolbar, #tabbrowser-tabs, #tabbrowser-tabbox, #browser, .browserStack"
    " { min-width: 0 !important; }\n"
)
STARTUP_TIMEOUT = 60.0


def _write_profile(profile) -> None:
    (profile / "chrome").mkdir(parents=True)
    lines = []
    for name, value in FIREFOX_PREFS.items():
        literal = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else (str(value) if isinstance(value, int) else '"' + value + '"')
        )
        lines.append(f'user_pref("{name}", {literal});\n')
    (profile / "user.js").write_text("".join(lines))
    (profile / "chrome" / "userChrome.css").write_text(PHONE_CHROME_CSS)


@pytest.fixture(scope="module")
def firefox_dir(tmp_path_factory):
    """Profile and console log (firefox.log) of the module's Firefox."""
    return tmp_path_factory.mktemp("firefox")


@pytest.fixture(scope="module")
def firefox(firefox_path, firefox_dir):
    """A Marionette client connected to a headless Firefox with a fresh profile (one per module)."""
    marionette = pytest.importorskip(
        "marionette_driver.marionette", reason="pip install marionette_driver"
    )
    tmp = firefox_dir
    profile = tmp / "profile"
    _write_profile(profile)
    log = open(tmp / "firefox.log", "wb")
    env = {
        **os.environ,
        "MOZ_CRASHREPORTER_DISABLE": "1",
        "MOZ_HEADLESS_WIDTH": "1600",
        "MOZ_HEADLESS_HEIGHT": "1200",
    }
    process = subprocess.Popen(
        [str(firefox_path), "-marionette", "-headless", "-no-remote", "-profile", str(profile)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    client = None
    try:
        port_file = profile / "MarionetteActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "firefox.log").read_bytes()[-2000:].decode(errors="replace")
                pytest.fail(
                    f"{firefox_path} did not start Marionette within {STARTUP_TIMEOUT:.0f} s: {tail}"
                )
            time.sleep(0.1)
        client = marionette.Marionette(
            host="127.0.0.1", port=int(port_file.read_text()), socket_timeout=60
        )
        client.start_session(timeout=STARTUP_TIMEOUT)
        assert client.session_capabilities["moz:headless"] is True
        client.timeout.page_load = 30
        client.timeout.script = 20
        yield client
    finally:
        try:
            if client is not None and client.session is not None:
                client.delete_session()
        except OSError:  # Firefox already gone: nothing to end
            pass
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
        log.close()


@contextlib.contextmanager
def _evidence_on_failure(client, request, artifacts_dir, firefox_dir):
    """On any failure inside, keep a screenshot, the page's HTML and URL, and Firefox's console
    log under artifacts/firefox-failures/<test>/ and print where they are."""
    try:
        yield
    except BaseException:
        folder = artifacts_dir / "firefox-failures" / re.sub(r"[^\w.-]+", "_", request.node.name)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, grab in (
            ("screenshot.png", lambda: client.screenshot(format="binary", full=True)),
            ("page.html", lambda: client.page_source.encode()),
            ("url.txt", lambda: client.get_url().encode()),
        ):
            try:
                (folder / name).write_bytes(grab())
            except Exception as err:  # the browser may be the thing that broke
                (folder / f"{name}.error.txt").write_text(repr(err))
        if (firefox_dir / "firefox.log").is_file():
            shutil.copyfile(firefox_dir / "firefox.log", folder / "firefox-console.log")
        print(
            f"\nFirefox failure evidence (screenshot, page, console log): {folder}", file=sys.stderr
        )
        raise


@pytest.fixture
def evidence(firefox, request, artifacts_dir, firefox_dir):
    return lambda: _evidence_on_failure(firefox, request, artifacts_dir, firefox_dir)


def _viewport(client, width: int, height: int) -> None:
    """Size the window so that the page's viewport is ``width`` × ``height`` CSS pixels.

    Headless Firefox applies a new window size asynchronously, so the chrome's extra size is
    read only once the window has its new outer size, and the viewport is polled."""
    rect = client.set_window_rect(width=width, height=height)  # the size Firefox settled on
    _wait(
        client,
        "return window.outerWidth === arguments[0] && window.outerHeight === arguments[1]",
        (rect["width"], rect["height"]),
        what=f"the window to become {rect['width']}x{rect['height']}",
    )
    extra_w, extra_h = client.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]"
    )
    client.set_window_rect(width=width + extra_w, height=height + extra_h)
    _wait(
        client,
        "return window.innerWidth === arguments[0] && window.innerHeight === arguments[1]",
        (width, height),
        what=f"a {width}x{height} viewport",
    )


def _wait(client, script: str, args=(), timeout: float = 30.0, what: str = "condition"):
    """Poll ``script`` until it returns a true value. A script error while the page is being
    replaced (a click that navigates returns before the next page exists) counts as "not yet"."""
    from marionette_driver.errors import JavascriptException, NoSuchWindowException

    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = client.execute_script(script, script_args=list(args))
        except (JavascriptException, NoSuchWindowException) as err:
            value, last_error = None, err
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} at {client.get_url()}"
                + (f" (last script error: {last_error})" if last_error else "")
            )
        time.sleep(0.05)


def _ready(client, done: int, total: int) -> None:
    # Null-safe: right after the consent form's "start" click this may still run on the
    # consent page (no #progress-text) or on the task page before its script has run.
    _wait(
        client,
        "const [d, t] = arguments;"
        " const text = document.getElementById('progress-text');"
        " const button = document.querySelector('#task button.answer');"
        " return text !== null && button !== null && text.textContent === d + ' / ' + t"
        " && !button.disabled",
        (done, total),
        what=f"task {done + 1} of {total}",
    )
    assert _code_hidden(client)


def _code_hidden(client) -> bool:
    return client.execute_script(
        "return document.getElementById('done').hidden"
        " && document.getElementById('code').textContent === ''"
    )


def _css(client, selector: str):
    from marionette_driver.by import By

    return client.find_element(By.CSS_SELECTOR, selector)


def _press(client, key: str) -> None:
    """A real key press (keydown, keyup) from Marionette's virtual keyboard, sent to the page."""
    client.actions.sequence("key", "keyboard").key_down(key).key_up(key).perform()


def _tap(client, selector: str) -> None:
    """A touch tap (pointer of type touch) on the middle of the element."""
    element = _css(client, selector)
    (
        client.actions.sequence("pointer", "finger", {"pointerType": "touch"})
        .pointer_move(0, 0, origin=element)
        .pointer_down()
        .pointer_up()
        .perform()
    )


def _screenshot(client, path) -> None:
    path.write_bytes(client.screenshot(format="binary", full=True))


def _consent(client, base: str, public_id: str, participant: str) -> None:
    client.delete_all_cookies()
    client.navigate(f"{base}/s/{public_id}/?PROLIFIC_PID={participant}")
    _wait(
        client,
        "return document.body.textContent.includes('please ignore blur and other scaling artifacts')",
        what="the consent page",
    )
    _wait(
        client,
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth === 512)",
        what="the example images",
    )


def _answers(url: str, study: str, participant: str):
    with session_scope(engine_for(url)) as s:
        rater = s.scalar(
            select(Rater)
            .join(Study, Study.id == Rater.study_id)
            .where(Study.name == study, Rater.participant == participant)
        )
        answers = s.execute(
            select(
                Answer.left, Answer.rating, Answer.choice, Answer.unknown_reason, Answer.response_ms
            )
            .where(Answer.rater_id == rater.id)
            .order_by(Answer.id)
        ).all()
        return rater.completion_code, rater.finished_at, answers


def test_whole_rating_session_in_firefox_with_clicks_and_keys(
    firefox,
    server,  # noqa: F811  (the fixture imported from test_browser)
    artifacts_dir,
    evidence,
):
    with evidence():
        _rating_session(firefox, server, artifacts_dir)


def _rating_session(firefox, server, artifacts_dir):  # noqa: F811
    _viewport(firefox, 1280, 900)
    _consent(firefox, server["base"], server["rating"].public_id, "firefox-rater")
    captions = [e.text for e in firefox.find_elements("css selector", "figcaption")]
    assert any(c.startswith("Real image (shapes data set)") for c in captions) and any(
        c.startswith("Generated") for c in captions
    )
    _screenshot(firefox, artifacts_dir / server["shot"]("study_rating_consent_firefox.png"))
    _css(firefox, "input[name=agree]").click()
    _css(firefox, "#start").click()
    _ready(firefox, 0, 5)
    assert re.fullmatch(r"(ring \(0\)|cross \(3\))", _css(firefox, "#label").text)
    assert firefox.execute_script("return document.getElementById('img-0').naturalWidth") == 512
    _screenshot(firefox, artifacts_dir / server["shot"]("study_rating_task_firefox.png"))
    _css(firefox, "button.answer[data-answer='4']").click()  # mouse
    _ready(firefox, 1, 5)
    _press(firefox, "2")  # keys 1-5
    _ready(firefox, 2, 5)
    _press(firefox, "5")
    _ready(firefox, 3, 5)
    _css(firefox, "#cant summary").click()  # the "can't answer" escape
    _css(firefox, "button.unknown[data-reason='cannot-decide']").click()
    _ready(firefox, 4, 5)
    code, finished, answers = _answers(server["url"], "rate", "firefox-rater")
    assert code is None and finished is None and len(answers) == 4  # no code before the last answer
    _press(firefox, "1")
    code = _wait(
        firefox,
        "const d = document.getElementById('done');"
        " return !d.hidden && document.getElementById('code').textContent",
        what="the completion code",
    )
    assert re.fullmatch(r"[0-9A-F]{12}", code)
    assert firefox.execute_script("return document.getElementById('task').hidden") is True
    _screenshot(firefox, artifacts_dir / server["shot"]("study_rating_done_firefox.png"))
    stored_code, finished, answers = _answers(server["url"], "rate", "firefox-rater")
    assert stored_code == code and finished is not None
    assert [(a.rating, a.choice, a.unknown_reason) for a in answers] == [
        (4, None, None),
        (2, None, None),
        (5, None, None),
        (None, "unknown", "cannot-decide"),
        (1, None, None),
    ]
    assert all(a.response_ms >= 0 for a in answers)


def test_whole_pairwise_session_in_firefox_on_a_phone_with_arrows_and_taps(
    firefox,
    server,  # noqa: F811  (the fixture imported from test_browser)
    artifacts_dir,
    evidence,
):
    with evidence():
        _pairwise_session(firefox, server, artifacts_dir)


def _pairwise_session(firefox, server, artifacts_dir):  # noqa: F811
    _viewport(firefox, 390, 844)
    _consent(firefox, server["base"], server["pairwise"].public_id, "firefox-phone-rater")
    assert (
        firefox.execute_script("return document.documentElement.scrollWidth") <= 390
    )  # no sideways scrolling
    _css(firefox, "input[name=agree]").click()
    _css(firefox, "#start").click()
    _ready(firefox, 0, 4)
    assert _css(firefox, "#question").text == "Which image is real?"
    left, right = _css(firefox, "#img-0").rect, _css(firefox, "#img-1").rect
    assert (
        left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 1
    )  # side by side
    assert right["x"] + right["width"] <= 390  # both fit the phone's width
    assert firefox.execute_script("return document.documentElement.scrollWidth") <= 390
    _screenshot(firefox, artifacts_dir / server["shot"]("study_pairwise_phone_firefox.png"))
    _press(firefox, "\ue012")  # ArrowLeft
    _ready(firefox, 1, 4)
    _press(firefox, "\ue014")  # ArrowRight
    _ready(firefox, 2, 4)
    _tap(firefox, "button.pick[data-answer='left']")
    _ready(firefox, 3, 4)
    code, _, answers = _answers(server["url"], "pair", "firefox-phone-rater")
    assert code is None and len(answers) == 3
    _css(firefox, "button.pick[data-answer='right']").click()
    code = _wait(
        firefox,
        "const d = document.getElementById('done');"
        " return !d.hidden && document.getElementById('code').textContent",
        what="the completion code",
    )
    assert re.fullmatch(r"[0-9A-F]{12}", code)
    _screenshot(firefox, artifacts_dir / server["shot"]("study_pairwise_phone_done_firefox.png"))
    stored_code, finished, answers = _answers(server["url"], "pair", "firefox-phone-rater")
    assert stored_code == code and finished is not None
    # Each answer names the image on the side that was picked (left, right, left, right).
    other = {"a": "b", "b": "a"}
    assert [a.choice for a in answers] == [
        answers[0].left,
        other[answers[1].left],
        answers[2].left,
        other[answers[3].left],
    ]
    assert (
        "tiny_ff" not in firefox.page_source and "real" not in _css(firefox, "#progress-text").text
    )


def test_mturk_hit_in_firefox_in_the_platforms_frame(firefox, db_url, sets, tmp_path, evidence):
    """An MTurk HIT in Firefox: the study in a frame of the platform's own site (another site),
    behind nginx as the README deploys it; Firefox keeps the frame's cookie apart from the
    study's own site, so the session must be partitioned to work there."""
    from test_browser_https import check_submitted_hit, framed_hit

    # the study and the platform run on certificates made for this test
    firefox.delete_session()
    firefox.start_session(capabilities={"acceptInsecureCerts": True}, timeout=STARTUP_TIMEOUT)
    firefox.timeout.page_load = 30
    firefox.timeout.script = 20
    with evidence(), framed_hit(db_url, sets, tmp_path) as hit:
        firefox.navigate(hit.page_url)
        _wait(firefox, "return document.querySelector('iframe') !== null", what="the HIT's frame")
        firefox.switch_to_frame(_css(firefox, "iframe"))
        _wait(
            firefox,
            "return document.querySelector('input[name=agree]') !== null",
            what="the consent form in the frame",
        )
        _css(firefox, "input[name=agree]").click()
        _css(firefox, "#start").click()
        _ready(firefox, 0, 2)
        _css(firefox, "button.answer[data-answer='3']").click()
        _ready(firefox, 1, 2)
        _press(firefox, "4")
        _wait(
            firefox,
            "return document.getElementById('submit-hit') !== null",
            what="the HIT's submit form",
        )
        _css(firefox, "#submit-hit").click()
        _wait(
            firefox,
            "return document.getElementById('submitted') !== null",
            what="the platform's page after the submission",
        )
        firefox.switch_to_frame()
    check_submitted_hit(db_url, hit.submitted, [3, 4])
