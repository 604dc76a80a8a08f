"""Test support: ``hvqeval study serve`` (gunicorn) on 127.0.0.1 in a child process, up when
``GET /healthz`` answers 200, stopped on exit (or killed with ``kill()``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate(folder: Path, name: str = "tls") -> tuple[str, str]:
    """(certificate, key) files for 127.0.0.1 in ``folder``, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


class LocalServer:
    def __init__(
        self,
        database_url: str,
        instance_dir: str,
        workers: int = 2,
        threads: int = 4,
        env: dict | None = None,
        startup_timeout: float = 60.0,
        port: int | None = None,
        tls: tuple[str, str] | None = None,
    ):
        """``tls``: (certificate, key) files to serve HTTPS with (``serve --certfile
        --keyfile``); the certificate, self-signed for 127.0.0.1, also verifies the server."""
        self.database_url, self.instance_dir = database_url, instance_dir
        self.workers, self.threads = workers, threads
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.port = port or free_port()
        self.tls = tls
        self.process = None
        self.output = ""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        env = {
            **os.environ,
            "HVQEVAL_RATE_LIMIT_RATER": "1000000/60",
            "HVQEVAL_RATE_LIMIT_IP": "1000000/60",
            **self.env,
        }
        env.setdefault("HVQEVAL_SECRET_KEY", "test-server-secret-key-0123456789")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hvqeval",
                "study",
                "serve",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--database-url",
                self.database_url,
                "--instance-dir",
                self.instance_dir,
                *(["--certfile", self.tls[0], "--keyfile", self.tls[1]] if self.tls else []),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.__exit__(None, None, None)  # never leave a half-started server behind
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.process.stdout.read().decode(errors='replace')}"
                )
            try:
                context = ssl.create_default_context(cafile=self.tls[0]) if self.tls else None
                with urllib.request.urlopen(
                    f"{self.url}/healthz", timeout=2, context=context
                ) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError("server did not start in time")

    def kill(self) -> None:
        """SIGKILL the whole server (arbiter and workers) at once, as a crash or power cut would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful shutdown of its workers
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.output = self.process.stdout.read().decode(errors="replace")
            self.process.stdout.close()


class SimulatedRater:
    """One rater's browser over HTTP (``requests``): entry link, consent, then answers through
    the JSON API with the page's CSRF token, until the completion code."""

    def __init__(self, base_url: str, public_id: str, participant: str):
        import requests

        self.http = requests.Session()
        self.root = base_url
        self.base = f"{base_url}/s/{public_id}"
        self.participant = participant
        self.csrf = None
        self.answers = 0
        self.state = None
        self.code = None

    def _token(self, html: str) -> None:
        import re

        found = re.search(r'name="csrf-token" content="([^"]+)"', html)
        if found:
            self.csrf = found.group(1)

    def enter(self) -> None:
        page = self.http.get(f"{self.base}/?PROLIFIC_PID={self.participant}", timeout=30)
        page.raise_for_status()
        self._token(page.text)
        page = self.http.post(
            f"{self.base}/consent", data={"agree": "yes", "csrf_token": self.csrf}, timeout=30
        )
        page.raise_for_status()
        self._token(page.text)

    def api(self, name: str, body: dict | None = None) -> dict:
        response = self.http.post(
            f"{self.base}/api/{name}",
            json=body or {},
            headers={"X-CSRFToken": self.csrf},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def run(self, answer_for, think=lambda: None, fetch_images: bool = False) -> SimulatedRater:
        """Answer until finished; ``answer_for(task)`` gives the answer of a task."""
        self.enter()
        current = self.api("next")
        while current["state"] == "task":
            if fetch_images:
                for image in current["images"]:
                    self.http.get(self.root + image, timeout=30).raise_for_status()
            think()
            reply = self.api(
                "answer",
                {"task": current["task"], "answer": answer_for(current), "response_ms": 1000},
            )
            self.answers += 1
            current = reply["next"]
        self.state, self.code = current["state"], current.get("code")
        return self
