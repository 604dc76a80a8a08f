"""Images blueprint: ``/img/<token>.png``, the 512×512 bilinear upscale of one study image.

Appendix G: images are "upscaled to 512×512 using bilinear interpolation" before they are
shown. The upscale is made once per image and kept in the instance folder under the image's
sha256: ``hvqeval study serve`` renders every study image ahead (``prerender_images``, before
it binds), so no rater request encodes a PNG; an image missing there is made on first view. The URL holds only an opaque random token; the file is found through
the database (never from anything in the URL), so there is no path to traverse. A rater may
fetch only the instruction examples and the images of their own assignments.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from flask import Blueprint, abort, current_app, send_file, session
from sqlalchemy import bindparam, exists, or_, select

from study_app.db import run_transaction, session_scope
from study_app.schema import Assignment, Image, Item, Source
from study_app.web import engine

bp = Blueprint("images", __name__)
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,40}$")

# The image lookups, built once (see assign.py): any image of the study for the admin; for a
# rater, the instruction examples and the images of the rater's own assignments.
IMAGE_FILE = (
    select(Image.file, Image.sha256, Source.path)
    .join(Source, Source.id == Image.source_id)
    .where(Image.token == bindparam("token"))
)
RATER_IMAGE_FILE = IMAGE_FILE.where(
    Image.study_id == bindparam("study_id"),
    or_(
        Image.is_example.is_(True),
        exists().where(
            Assignment.rater_id == bindparam("rater_id"),
            Assignment.item_id == Item.id,
            or_(Item.image_a_id == Image.id, Item.image_b_id == Image.id),
        ),
    ),
)


def upscaled_path(source_file: Path, sha256: str, size: int, cache_dir: Path) -> Path:
    """Path of the cached ``size``×``size`` bilinear upscale of ``source_file`` (made on first use)."""
    from PIL import Image as PILImage

    target = cache_dir / f"{sha256}-{size}.png"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with PILImage.open(source_file) as img:
        resized = img.convert("RGB").resize((size, size), PILImage.Resampling.BILINEAR)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        resized.save(fh, format="PNG", compress_level=1)  # lossless; fast to encode on first view
    os.replace(tmp, target)  # atomic: parallel workers may race to write the same file
    return target


def image_cache_dir(instance_path: str | Path) -> Path:
    """Where the upscales of an app with this instance folder are kept."""
    return Path(instance_path) / "cache" / "images"


def prerender_images(engine, size: int, cache_dir: Path, progress=None) -> int:
    """Make the ``size``×``size`` upscale of every study image that lacks one; returns how
    many images there are. ``progress(done, total)`` is called after each one (a progress bar)."""
    with session_scope(engine, read_only=True) as s:
        rows = s.execute(
            select(Image.file, Image.sha256, Source.path)
            .join(Source, Source.id == Image.source_id)
            .distinct()
        ).all()
    for done, row in enumerate(rows, 1):
        root = Path(row.path)
        source_file = (root / row.file).resolve()
        if root.resolve() in source_file.parents and source_file.is_file():
            upscaled_path(source_file, row.sha256, size, cache_dir)
        if progress is not None:
            progress(done, len(rows))
    return len(rows)


def prerender(app, progress=None) -> int:
    """``prerender_images`` for the images of ``app``'s database, size and cache folder."""
    return prerender_images(
        app.extensions["study_engine"],
        app.config["DISPLAY_SIZE"],
        Path(app.config["IMAGE_CACHE_DIR"]),
        progress,
    )


@bp.get("/img/<token>.png")
def image(token: str):
    if not TOKEN_RE.match(token):
        abort(404)
    rater_id = session.get("rater_id")
    is_admin = bool(session.get("admin"))
    if rater_id is None and not is_admin:
        abort(403, "open the study link you were given first")
    if is_admin:
        query, values = IMAGE_FILE, {"token": token}
    else:
        query = RATER_IMAGE_FILE
        values = {"token": token, "study_id": session.get("study_id"), "rater_id": rater_id}
    row = run_transaction(
        engine(), lambda connection: connection.execute(query, values).first(), read_only=True
    )
    if row is None:
        abort(404)
    root = Path(row.path)
    source_file = (root / row.file).resolve()
    if root.resolve() not in source_file.parents or not source_file.is_file():
        abort(404)
    size = current_app.config["DISPLAY_SIZE"]
    path = upscaled_path(source_file, row.sha256, size, Path(current_app.config["IMAGE_CACHE_DIR"]))
    response = send_file(path, mimetype="image/png", max_age=3600, etag=False, last_modified=None)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
