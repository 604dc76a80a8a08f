"""Simulated raters: drive a running study server over HTTP like a browser does.

Used by the concurrency tests and ``benchmarks/study_load.py``; also handy against a
staging deployment. Each simulated rater keeps one keep-alive connection and its session
cookie, enters through the study link, consents, asks ``POST api/next`` for its first task,
then answers with ``POST api/answer`` (whose reply carries the next task) until it receives its
completion code, exactly like ``static/rater.js``. Latencies of both calls are
recorded. Standard library only: a minimal HTTP/1.1 client on a plain socket (one write per
request, Content-Length or chunked replies, keep-alive), because the load generator shares the
machine's cores with the server it measures and ``http.client``'s header parsing costs more CPU
than a rater's whole request handling in the server.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')
MAX_HEADER_BYTES = 64 * 1024


class ServerClosed(ConnectionError):
    """The server closed a kept-alive connection before answering (safe to retry)."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: ``request`` sends a request in one write and returns
    (status, headers as a list of (lower-case name, value), body). Enough HTTP for the study
    server (Content-Length, chunked or read-to-close bodies); not a general client."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host_header = f"{host}:{port}".encode("latin-1")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.open = True

    def close(self) -> None:
        self.open = False
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: " + self.host_header]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
        if body is not None or method == "POST":
            lines.append(b"Content-Length: %d" % len(body or b""))
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEADER_BYTES:
                raise http.client.HTTPException("response header too long")
            if not self._fill():
                if not self.buf:
                    raise ServerClosed("server closed the connection")
                raise http.client.IncompleteRead(bytes(self.buf))
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        version, status, _reason = (head[0] + " ").split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise http.client.BadStatusLine(head[0])
        response_headers = []
        length = None
        chunked = close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            response_headers.append((name, value))
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        status = int(status)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif chunked:
            data = self._read_chunked()
        elif length is not None:
            while len(self.buf) < length:
                if not self._fill():
                    raise http.client.IncompleteRead(bytes(self.buf), length - len(self.buf))
            data = bytes(self.buf[:length])
            del self.buf[:length]
        else:  # no length: the body ends when the server closes
            while self._fill():
                pass
            data, close = bytes(self.buf), True
            self.buf.clear()
        if close or version == "HTTP/1.0":
            self.close()
        return status, response_headers, data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if not self._fill():
                raise http.client.IncompleteRead(bytes(self.buf))
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line():  # trailers up to the empty line
                    pass
                return b"".join(parts)
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise http.client.IncompleteRead(bytes(self.buf), size + 2 - len(self.buf))
            parts.append(bytes(self.buf[:size]))
            del self.buf[:size + 2]


@dataclass
class RaterLog:
    participant: str
    answers: int = 0
    code: str | None = None
    state: str | None = None
    next_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    reconnects: int = 0
    error: str | None = None


class SimulatedRater:
    def __init__(self, host: str, port: int, public_id: str, participant: str, kind: str, seed: int,
                 fetch_images: bool = False, timeout: float = 30.0, think_ms: float = 0.0):
        self.host, self.port, self.public_id = host, port, public_id
        self.kind = kind
        self.rng = random.Random(seed)
        self.fetch_images = fetch_images
        self.timeout = timeout
        self.think_s = think_ms / 1000
        self.cookie = ""
        self.csrf = ""
        self.conn: HttpConnection | None = None
        self.log = RaterLog(participant)
        self._api_paths = {name: f"/s/{public_id}/api/{name}" for name in ("next", "answer")}
        self._api_headers: dict = {}

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        for attempt in range(3):
            if self.conn is None or not self.conn.open:
                self.conn = HttpConnection(self.host, self.port, self.timeout)
            try:
                status, response_headers, data = self.conn.request(method, path, body, headers)
                break
            except (ServerClosed, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection; a repeated POST is safe
                # because the server stores an answer at most once.
                self.conn.close()
                self.conn = None
                self.log.reconnects += 1
                if attempt == 2:
                    raise
        for name, value in response_headers:
            if name == "set-cookie":
                name_value = value.split(";", 1)[0]
                if name_value.startswith("session="):
                    self.cookie = name_value
        self.log.statuses[status] = self.log.statuses.get(status, 0) + 1
        return status, response_headers, data

    def _api(self, name: str, payload: dict):
        body = json.dumps(payload).encode()
        start = time.perf_counter()
        status, _h, data = self._request("POST", self._api_paths[name], body, self._api_headers)
        elapsed = (time.perf_counter() - start) * 1000
        return status, (json.loads(data) if data else {}), elapsed

    def enter(self) -> None:
        query = urllib.parse.urlencode({"PROLIFIC_PID": self.log.participant})
        status, headers, _ = self._request("GET", f"/s/{self.public_id}/?{query}")
        if status != 302:
            raise RuntimeError(f"entry answered {status}")
        status, _h, data = self._request("GET", f"/s/{self.public_id}/consent")
        self.csrf = CSRF_RE.search(data.decode()).group(1)
        self._api_headers = {"Content-Type": "application/json", "X-CSRFToken": self.csrf}
        form = urllib.parse.urlencode({"agree": "yes", "csrf_token": self.csrf}).encode()
        status, _h, _ = self._request("POST", f"/s/{self.public_id}/consent", form,
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302:
            raise RuntimeError(f"consent answered {status}")

    def answer_value(self):
        if self.rng.random() < 0.02:
            return "unknown", "cannot-decide"
        if self.kind == "rating":
            return self.rng.randint(1, 5), None
        return self.rng.choice(("left", "right")), None

    def run(self, deadline: float) -> RaterLog:
        try:
            self.enter()
            task = None
            while time.monotonic() < deadline:
                if task is None:  # first task, or after a refused answer: ask for one
                    status, task, ms = self._api("next", {})
                    self.log.next_ms.append(ms)
                    if status != 200:
                        raise RuntimeError(f"next answered {status}: {task}")
                if task["state"] != "task":
                    self.log.state, self.log.code = task["state"], task.get("code")
                    return self.log
                if self.fetch_images:
                    for url in task["images"]:
                        status, _h, _ = self._request("GET", url)
                        if status != 200:
                            raise RuntimeError(f"image answered {status}")
                if self.think_s:  # a person looks at the images before answering
                    time.sleep(self.think_s * self.rng.uniform(0.5, 1.5))
                answer, reason = self.answer_value()
                payload = {"task": task["task"], "answer": answer, "response_ms": self.rng.randint(300, 5000)}
                if reason:
                    payload["reason"] = reason
                status, reply, ms = self._api("answer", payload)
                self.log.answer_ms.append(ms)
                task = reply.get("next") if status == 200 else None  # the reply carries the next task
                if status == 200 or (status == 409 and "already answered" in reply.get("error", "")):
                    # 409 "already answered": a retried POST whose first attempt was stored.
                    self.log.answers += 1
                elif status != 409:
                    raise RuntimeError(f"answer answered {status}: {reply}")
            self.log.error = "deadline reached"
        except Exception as err:  # noqa: BLE001 - recorded per rater and reported by the caller
            self.log.error = f"{type(err).__name__}: {err}"
        finally:
            if self.conn is not None:
                self.conn.close()
        return self.log


@dataclass(frozen=True)
class LoadResult:
    logs: tuple[RaterLog, ...]
    seconds: float

    @property
    def answers(self) -> int:
        return sum(log.answers for log in self.logs)

    @property
    def errors(self) -> list[str]:
        return [f"{log.participant}: {log.error}" for log in self.logs if log.error]

    def percentile(self, which: str, q: float) -> float:
        values = sorted(v for log in self.logs for v in getattr(log, f"{which}_ms"))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def run_raters(host: str, port: int, public_id: str, count: int, kind: str, *, time_limit: float = 120.0,
               fetch_images: bool = False, prefix: str = "sim", seed: int = 0, think_ms: float = 0.0,
               arrival_s: float = 0.0) -> LoadResult:
    """Run ``count`` simulated raters in parallel threads until they finish or time runs out.

    ``think_ms``: mean pause between seeing a task and answering it (uniform in 0.5-1.5 times).
    ``arrival_s``: raters open the study link one after another, evenly over this many seconds
    (0: all at the same instant); once in, every rater keeps answering until the study is full.
    """
    deadline = time.monotonic() + time_limit
    raters = [SimulatedRater(host, port, public_id, f"{prefix}-{i}", kind, seed * 100_003 + i, fetch_images,
                              think_ms=think_ms)
              for i in range(count)]
    start_gate = threading.Barrier(count + 1)
    logs: list[RaterLog | None] = [None] * count

    def work(i: int):
        start_gate.wait()
        if arrival_s:
            time.sleep(arrival_s * i / count)
        logs[i] = raters[i].run(deadline)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    start_gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    seconds = time.perf_counter() - started
    return LoadResult(tuple(log or RaterLog(f"{prefix}-{i}", error="thread did not finish")
                            for i, log in enumerate(logs)), seconds)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``hvqeval study serve`` (gunicorn) on 127.0.0.1 in a child process, stopped on exit."""

    def __init__(self, database_url: str, instance_dir: str, workers: int = 2, threads: int = 8,
                 env: dict | None = None, startup_timeout: float = 60.0, worker_class: str = "gthread"):
        self.database_url, self.instance_dir = database_url, instance_dir
        self.workers, self.threads, self.worker_class = workers, threads, worker_class
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.process = None

    def __enter__(self) -> "LocalServer":
        import os
        import subprocess
        import sys

        env = {**os.environ, "HVQEVAL_RATE_LIMIT_RATER": "1000000/60", "HVQEVAL_RATE_LIMIT_IP": "1000000/60",
               **self.env}
        env.setdefault("HVQEVAL_SECRET_KEY", "load-test-secret-key-0123456789")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hvqeval", "study", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads), "--worker-class", self.worker_class,
             "--database-url", self.database_url, "--instance-dir", self.instance_dir],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving()
        except BaseException:
            self.__exit__(None, None, None)  # never leave a half-started server behind
            raise
        return self

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read().decode(errors='replace')}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/static/study.css")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in time")

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful shutdown of its workers
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.output = self.process.stdout.read().decode(errors="replace")
            self.process.stdout.close()


def process_tree_cpu_seconds(root_pid: int) -> float | None:
    """User + system CPU seconds used so far by ``root_pid`` and its descendants (Linux /proc)."""
    import os

    try:
        ticks = os.sysconf("SC_CLK_TCK")
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # fields[1] = ppid, fields[11] = utime, fields[12] = stime (after the comm field)
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except (OSError, ValueError):
        return None
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _cpu) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[p][1] for p in tree if p in stats) / ticks
