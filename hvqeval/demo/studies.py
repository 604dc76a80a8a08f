"""The demo's human studies: what ``hvqeval study create`` is given, and how to serve them.

The secret key and admin password the web app needs are files in the demo folder (readable
by this user only), and the printed serve line reads them, so it starts the server as printed.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

from hvqeval.demo.plan import CARDS, NUM_CLASSES


def study_specs(
    out: Path, data: str, database_url: str, per_class: int, sampled_per_class: int | None = None
) -> dict[str, list[str]]:
    """``hvqeval study create`` arguments of each study, by study name; ``per_class``: images per
    class and model (at most ``sampled_per_class``, the samples per class every model has).
    When every sample is a task, none is left for the instructions' examples: the studies then
    say ``--no-examples`` (study create refuses to drop them silently)."""
    ff, msp = (str(out / "samples" / card) for card in CARDS.values())
    common = [
        "--classes",
        str(NUM_CLASSES[data]),
        "--per-class",
        str(per_class),
        "--database-url",
        database_url,
        "--instance-dir",
        str(out / "instance"),
        "--tasks-per-rater",
        "20",
        "--json",
    ]
    if sampled_per_class is not None and per_class >= sampled_per_class:
        common.append("--no-examples")
    pairs = [
        "--pairs-per-class",
        str(per_class * min(per_class, 2)),
    ]  # at most the per_class**2 there are
    return {
        "demo-rating": [
            "study",
            "create",
            "rating",
            "--name",
            "demo-rating",
            "--model",
            f"FF={ff}",
            "--model",
            f"MSP={msp}",
            "--real",
            f"real={data}",
            *common,
        ],
        "demo-ff-vs-msp": [
            "study",
            "create",
            "pairwise",
            "--name",
            "demo-ff-vs-msp",
            "--a",
            f"FF={ff}",
            "--b",
            f"MSP={msp}",
            *pairs,
            *common,
        ],
        "demo-msp-vs-real": [
            "study",
            "create",
            "pairwise",
            "--name",
            "demo-msp-vs-real",
            "--a",
            f"MSP={msp}",
            "--b",
            f"real=real:{data}",
            *pairs,
            *common,
        ],
    }


def secret_files(out: Path) -> dict[str, Path]:
    """The web app's secret key and an admin password (for the progress pages), written once
    into the demo folder, readable by this user only."""
    files = {
        "HVQEVAL_SECRET_KEY": out / "secret_key",
        "HVQEVAL_ADMIN_PASSWORD": out / "admin_password",
    }
    for variable, path in files.items():
        if not path.exists():
            value = (
                secrets.token_hex(32)
                if variable == "HVQEVAL_SECRET_KEY"
                else secrets.token_urlsafe(12)
            )
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
            os.replace(tmp, path)
    return files


def serve_command(out: Path, database_url: str) -> str:
    """The line that serves the studies, as a user pastes it into bash."""
    env = " ".join(
        f'{variable}="$(cat {shlex.quote(str(path))})"'
        for variable, path in secret_files(out).items()
    )
    return (
        f"{env} hvqeval study serve --database-url {shlex.quote(database_url)} "
        f"--instance-dir {shlex.quote(str(out / 'instance'))} --bind 127.0.0.1:8000"
    )


def study_links(database_url: str) -> dict[str, str]:
    """Raters' entry links of the demo's studies (opaque ids, participant id in the URL)."""
    from sqlalchemy import select

    from study_app.db import open_database, session_scope
    from study_app.schema import Study

    with open_database(database_url) as engine, session_scope(engine) as session:
        rows = session.execute(
            select(Study.name, Study.public_id).where(Study.name.like("demo-%"))
        ).all()
    return {
        name: f"http://127.0.0.1:8000/s/{public_id}/?PROLIFIC_PID=demo-rater-1"
        for name, public_id in rows
    }
