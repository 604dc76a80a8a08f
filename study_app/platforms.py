"""Crowd platforms: what Prolific and Amazon Mechanical Turk add to the entry link, and how a
finished rater is sent back.

Prolific appends ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; all three are stored with the
rater. A study may carry one completion code (Prolific's per-study code, given to every rater
instead of a random one) and a completion URL (``https://app.prolific.com/submissions/complete?cc=...``)
the rater is redirected to once the last answer is stored.

MTurk (an ExternalQuestion HIT) appends ``assignmentId``, ``hitId``, ``workerId`` and
``turkSubmitTo``. While a worker previews the HIT, ``assignmentId`` is
``ASSIGNMENT_ID_NOT_AVAILABLE``: the page shows the instructions and examples and claims nothing.
After the last answer, the completion page posts ``assignmentId`` and the completion code to
``<turkSubmitTo>/mturk/externalSubmit``; ``turkSubmitTo`` must be one of the configured origins
(``MTURK_SUBMIT_HOSTS``: MTurk's production and sandbox sites by default), so a crafted link
cannot send a rater's form elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_DEFAULT_HOSTS = "https://www.mturk.com,https://workersandbox.mturk.com"
EXTERNAL_SUBMIT = "/mturk/externalSubmit"
MAX_ID = 100
# The characters of every id a link brings (participant, study, session, HIT, assignment):
# Prolific's ids are hex, MTurk's letters and digits. No control characters (PostgreSQL
# refuses NUL in text), no leading "=" a spreadsheet would run from the exported CSV.
ID_RE = re.compile(r"[A-Za-z0-9_.@:+-]+")


class PlatformError(ValueError):
    """A platform parameter of the entry link is malformed (the message says which)."""


@dataclass(frozen=True)
class PlatformEntry:
    platform: str | None  # "prolific", "mturk" or None
    study: str | None = None  # Prolific STUDY_ID / MTurk hitId
    session: str | None = None  # Prolific SESSION_ID / MTurk assignmentId
    submit_to: str | None = None  # MTurk turkSubmitTo (an allowed origin)


def origin(url: str) -> str | None:
    """``https://host[:port]`` of ``url``, or None when it is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket: "https://[::1"
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def allowed_hosts(setting: str) -> tuple[str, ...]:
    """The origins of ``MTURK_SUBMIT_HOSTS`` (comma-separated); ValueError for a bad one."""
    hosts = []
    for part in str(setting).split(","):
        if part.strip():
            found = origin(part)
            if found is None:
                raise ValueError(part.strip())
            hosts.append(found)
    return tuple(hosts)


def is_preview(args) -> bool:
    return args.get("assignmentId") == PREVIEW_ASSIGNMENT


def _short(args, name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > MAX_ID:
        raise PlatformError(f"{name}: at most {MAX_ID} characters")
    if value and not ID_RE.fullmatch(value):
        raise PlatformError(f"{name}: use letters, digits or . _ @ : + - only")
    return value or None


def entry_from_args(args, hosts: tuple[str, ...]) -> PlatformEntry:
    """The platform fields of an entry link's query ``args``."""
    if args.get("workerId") or args.get("assignmentId"):
        submit_to = (args.get("turkSubmitTo") or "").strip() or None
        if submit_to is not None:
            found = origin(submit_to)
            if found is None or found not in hosts:
                raise PlatformError("turkSubmitTo: not an MTurk submit address this server accepts")
            submit_to = found
        return PlatformEntry(
            "mturk", _short(args, "hitId"), _short(args, "assignmentId"), submit_to
        )
    if args.get("PROLIFIC_PID"):
        return PlatformEntry("prolific", _short(args, "STUDY_ID"), _short(args, "SESSION_ID"))
    return PlatformEntry(None)


def rater_columns(entry: PlatformEntry | None) -> dict:
    """The rater columns that say where the rater came from (stored by ``assign.enter`` in the
    entry's own transaction; the latest entry wins: an MTurk worker who returns a HIT and
    accepts it again comes back with a new assignmentId). Empty when no platform is known."""
    if entry is None or entry.platform is None:
        return {}
    return {
        "platform": entry.platform,
        "platform_study": entry.study,
        "platform_session": entry.session,
        "submit_to": entry.submit_to,
    }


def external_submit_url(submit_to: str) -> str:
    return submit_to.rstrip("/") + EXTERNAL_SUBMIT
