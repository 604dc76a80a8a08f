"""Locust users for ``benchmarks/study_load.py``: raters of one study on a running server.

Each user opens the study link with its own participant id, posts consent (the task page it
is sent to carries its first task), and then, until it gets its completion code: fetches the
task's images, thinks (``THINK_MIN_S``..``THINK_MAX_S`` seconds, uniform) and posts an answer
(the reply carries the next task). Like a new browser, a user also fetches what each page
names: the instructions' example images (the stylesheet, the script and the icon are inside
the pages; a file a page named would be fetched too), keeping them as a browser's cache does
(fresh for ``max-age``; otherwise asked again with ``If-None-Match`` / ``If-Modified-Since``,
answered by a 304). The first task is thought about like every other one (locust runs a
user's first task as soon as ``on_start`` returns, so ``on_start`` waits once itself). What
each user was told was stored is counted, and written to ``RESULT_FILE`` at the end, so the
benchmark can compare it with the database (nothing lost, nothing doubled).

Arrivals are even: locust starts users in batches (a spawn rate of 50/s starts 50 users at
the same instant once a second), so ``study_load.py`` starts every user at once and each waits
for its own arrival time, ``ARRIVAL_S`` × its number / ``RATERS`` after the test started.

Every request's end time, name and milliseconds go to ``REQUEST_LOG`` (one line each), from
which ``study_load.py`` draws the latency second by second (where in the run the tail is).

Settings (environment): STUDY_PUBLIC_ID, STUDY_KIND (rating|pairwise), THINK_MIN_S, THINK_MAX_S,
RATERS, ARRIVAL_S, RESULT_FILE, REQUEST_LOG. Run by ``study_load.py`` through locust's own command line.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from urllib.parse import urlencode

import gevent
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser

PUBLIC_ID = os.environ["STUDY_PUBLIC_ID"]
KIND = os.environ.get("STUDY_KIND", "rating")
THINK = (float(os.environ.get("THINK_MIN_S", "2")), float(os.environ.get("THINK_MAX_S", "4")))
ARRIVAL_GAP_S = float(os.environ.get("ARRIVAL_S", "0")) / max(1, int(os.environ.get("RATERS", "1")))
# the task page carries the rater's first task (as the browser's script reads it)
FIRST_TASK_RE = re.compile(r'<script type="application/json" id="first-task">(.*?)</script>', re.S)
# what a browser loads of a page: its stylesheet and icon, its scripts, its images
SUBRESOURCE_RE = re.compile(
    r'<(?:link rel="(?:stylesheet|icon)" href|script src|img src)="([^"]+)"'
)
MAX_AGE_RE = re.compile(r"max-age=(\d+)")
_numbers = itertools.count()
_started = {}  # when the test started (test_start), the origin of the arrival times
_totals = {"stored": 0, "finished": 0, "unavailable": 0, "users": 0, "stored_tasks": []}


class Rater(FastHttpUser):
    # FastHttpUser (geventhttpclient) costs a fraction of HttpUser's CPU per request: the load
    # generator shares the two cores with the server and the database, so its cost counts.
    wait_time = between(*THINK)  # a rater looks at the images before answering

    def on_start(self):
        _totals["users"] += 1
        number = next(_numbers)
        arrival = _started["at"] + number * ARRIVAL_GAP_S
        gevent.sleep(max(0.0, arrival - time.monotonic()))  # this rater's turn to arrive
        self.participant = f"locust-{number}"
        self.rng = random.Random(self.participant)
        self.cache = {}  # URL -> (fresh until, validators): this browser's cache
        base = f"/s/{PUBLIC_ID}"
        page = self.client.get(
            f"{base}/?PROLIFIC_PID={self.participant}", name="entry (consent page)"
        )
        self.load_subresources(page.text)
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        task_page = self.client.post(
            f"{base}/consent",
            data=urlencode({"agree": "yes", "csrf_token": self.csrf}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            name="consent + task page",
        )
        self.current = json.loads(FIRST_TASK_RE.search(task_page.text).group(1))
        self.load_subresources(task_page.text)  # stylesheet, icon, script (its images: below)
        self.show_task()
        self.wait()  # the first task too is looked at before it is answered

    def load_subresources(self, html: str) -> None:
        """Fetch what the page names, as a browser does with its cache: a file still fresh is
        not asked for, a stale one is revalidated. (The task page's images have no ``src``
        until its script sets them: ``show_task`` fetches those.)"""
        for url in SUBRESOURCE_RE.findall(html):
            if url.startswith("data:"):  # inside the page (the icon): nothing to fetch
                continue
            fresh_until, validators = self.cache.get(url, (0.0, {}))
            if time.monotonic() < fresh_until:
                continue
            kind = "image (example)" if url.startswith("/img/") else "static file"
            reply = self.client.get(url, headers=validators, name=kind)
            max_age = MAX_AGE_RE.search(reply.headers.get("Cache-Control") or "")
            if reply.status_code != 304:  # a new copy and its validators (a 304 keeps ours)
                validators = {
                    header: reply.headers[source]
                    for header, source in (
                        ("If-None-Match", "ETag"),
                        ("If-Modified-Since", "Last-Modified"),
                    )
                    if reply.headers.get(source)
                }
            fresh_for = int(max_age.group(1)) if max_age else 0
            self.cache[url] = (time.monotonic() + fresh_for, validators)

    def call_api(self, name: str, body: dict):
        reply = self.client.post(
            f"/s/{PUBLIC_ID}/api/{name}",
            json=body,
            headers={"X-CSRFToken": self.csrf},
            name=f"api/{name}",
        )
        reply.raise_for_status()
        return reply.json()

    def show_task(self):
        """Fetch the images of the current task, or stop when there is none."""
        state = self.current["state"] if self.current else "unavailable"
        if state != "task":
            _totals["finished" if state == "finished" else "unavailable"] += 1
            raise StopUser()
        for image in self.current["images"]:
            self.client.get(image, name="image")

    @task
    def answer(self):
        answer = self.rng.randint(1, 5) if KIND == "rating" else self.rng.choice(["left", "right"])
        reply = self.call_api(
            "answer",
            {
                "task": self.current["task"],
                "answer": answer,
                "response_ms": self.rng.randint(2000, 4000),
            },
        )
        if reply.get("stored"):
            _totals["stored"] += 1
            _totals["stored_tasks"].append(self.current["task"])
        self.current = reply["next"]
        self.show_task()


_request_log = open(os.environ["REQUEST_LOG"], "w", encoding="utf-8")  # noqa: SIM115 - whole run


@events.request.add_listener
def _log_request(name, response_time, **_kwargs):
    _request_log.write(f"{time.time():.3f}\t{name}\t{response_time:.1f}\n")


@events.test_stop.add_listener
def _write_totals(environment, **_kwargs):
    _request_log.close()
    with open(os.environ["RESULT_FILE"], "w", encoding="utf-8") as fh:
        json.dump(_totals, fh)


_runner = {}


@events.test_start.add_listener
def _note_the_start(**_kwargs):
    _started["at"] = time.monotonic()


@events.init.add_listener
def _keep_the_runner(environment, **_kwargs):
    _runner["environment"] = environment


@events.spawning_complete.add_listener
def _watch_for_the_end(user_count, **_kwargs):
    """Quit once every rater has stopped (all finished: the study is full)."""
    environment = _runner["environment"]

    def watch():
        while _totals["finished"] + _totals["unavailable"] < user_count:
            gevent.sleep(0.2)
        environment.runner.quit()

    gevent.spawn(watch)
