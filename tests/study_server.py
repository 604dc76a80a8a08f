"""Test support: ``hvqeval study serve`` (gunicorn) on 127.0.0.1 in a child process, up when
``GET /healthz`` answers 200, stopped on exit (or killed with ``kill()``)."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Self

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate(folder: Path, name: str = "tls") -> tuple[str, str]:
    """(certificate, key) files for 127.0.0.1 and localhost in ``folder``, made with the
    openssl command."""
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
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


# The README's nginx block ("HTTPS"), with this test's port, certificate and server.
NGINX_CONF = """pid {folder}/nginx.pid;
error_log {folder}/error.log;
daemon off;
events {{}}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        client_max_body_size 64k;
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


class TlsProxy:
    """nginx terminating TLS for ``upstream`` (a LocalServer's URL) on 127.0.0.1, configured as
    the README says; ``url`` is its ``https://`` address. Skips the test without nginx."""

    def __init__(self, upstream: str, cert: str, key: str, folder: Path):
        self.nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None
        )
        if self.nginx is None:
            pytest.skip("nginx is needed to terminate TLS (apt-get install nginx-light)")
        self.port, self.folder = free_port(), folder / "nginx"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(
            NGINX_CONF.format(
                folder=self.folder, port=self.port, cert=cert, key=key, upstream=upstream
            )
        )
        self.cert, self.process = cert, None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [self.nginx, "-c", str(self.conf), "-p", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        context = ssl.create_default_context(cafile=self.cert)  # our own certificate
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2, context=context):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("nginx did not start in time")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process is not None:
            self.process.stderr.close()


class PlatformSite:
    """A crowd platform's site on another origin (``https://localhost:PORT``; the study is on
    127.0.0.1, another site): ``/hit`` frames a URL, as MTurk shows an ExternalQuestion HIT, and
    ``POST /mturk/externalSubmit`` is kept in ``submitted`` (a dict of the form and its path)."""

    def __init__(self, cert: str, key: str):
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self._reply(
                    f'<!doctype html><iframe src="{site.frame_url}" width="1000" '
                    'height="900"></iframe>'
                )

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                site.submitted.append({k: v[0] for k, v in form.items()} | {"path": self.path})
                self._reply("<!doctype html><p id='submitted'>HIT submitted</p>")

            def _reply(self, body: str):
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        self.frame_url, self.submitted = "", []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.origin = f"https://localhost:{self.server.server_address[1]}"
        self.page_url = f"{self.origin}/hit"

    def frame(self, url: str) -> None:
        self.frame_url = url

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    ):
        self.database_url, self.instance_dir = database_url, instance_dir
        self.workers, self.threads = workers, threads
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.port = port or free_port()
        self.process = None
        self.output = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
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
