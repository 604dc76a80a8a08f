"""Images blueprint: ``/img/<key>.png``, the 512×512 bilinear upscale of one study image.

Appendix G: images are "upscaled to 512×512 using bilinear interpolation" before they are
shown. The upscale is made once per image and kept in the instance folder under the image's
random token: ``hvqeval study serve`` renders every study image ahead (``prerender_images``,
before it binds), so no rater request encodes a PNG; an image missing there is made on first
view. The URL holds only the opaque token (never a path, never the image's hash, which would
let a rater look a real image up), so there is nothing to traverse.

A rater may fetch only the instruction examples and the images of their own tasks. The server
says so when it hands out the URL: a task image's URL is the token signed (``itsdangerous.Signer``,
the app's secret key) with a salt naming the rater, valid only in that rater's session; an
example's URL is signed with the examples' salt, valid for anyone shown the instructions (an
MTurk preview has no session). The image request checks the signature and reads no database
(unless the image was not rendered ahead). The admin's URL is the bare token.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from flask import Blueprint, abort, current_app, send_file, session, url_for
from itsdangerous import Signer
from sqlalchemy import bindparam, select

from study_app.db import run_transaction, session_scope
from study_app.schema import Image, Source
from study_app.web import engine

bp = Blueprint("images", __name__)
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,40}$")

# The image lookup, built once (see assign.py): where an image's file is.
IMAGE_FILE = (
    select(Image.file, Source.path)
    .join(Source, Source.id == Image.source_id)
    .where(Image.token == bindparam("token"))
)


def _signer(rater_id: int | None) -> Signer:
    """Signs the image URLs of one rater's tasks, or (None) the instruction examples'."""
    salt = "study-example-image" if rater_id is None else f"study-image:{rater_id}"
    return Signer(current_app.secret_key, salt=salt)


def rater_image_url(token: str, rater_id: int) -> str:
    """The URL of image ``token`` for rater ``rater_id``: valid only in that rater's session."""
    return url_for("images.image", key=_signer(rater_id).sign(token).decode())


@bp.app_template_global()
def example_image_url(token: str) -> str:
    """The URL of instruction example ``token``, valid for anyone shown the instructions."""
    return url_for("images.image", key=_signer(None).sign(token).decode())


def cached_path(token: str, size: int, cache_dir: Path) -> Path:
    """Where the ``size``×``size`` upscale of the image with this token is kept."""
    return cache_dir / f"{token}-{size}.png"


def upscaled_path(source_file: Path, token: str, size: int, cache_dir: Path) -> Path:
    """Path of the cached ``size``×``size`` bilinear upscale of ``source_file``, the image
    with this token (made on first use)."""
    from PIL import Image as PILImage

    target = cached_path(token, size, cache_dir)
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
            select(Image.token, Image.file, Source.path).join(Source, Source.id == Image.source_id)
        ).all()
    for done, row in enumerate(rows, 1):
        root = Path(row.path)
        source_file = (root / row.file).resolve()
        if root.resolve() in source_file.parents and source_file.is_file():
            upscaled_path(source_file, row.token, size, cache_dir)
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


@bp.get("/img/<key>.png")
def image(key: str):
    token, _, signature = key.partition(".")
    if not TOKEN_RE.match(token):
        abort(404)
    rater_id = session.get("rater_id")
    if signature:  # the server handed this image out: to this rater, or as an example
        for_rater = rater_id is not None and _signer(rater_id).validate(key)
        if not for_rater and not _signer(None).validate(key):
            if rater_id is None:
                abort(403, "open the study link you were given first")
            abort(404)
    elif not session.get("admin"):
        abort(403 if rater_id is None else 404, "open the study link you were given first")
    size = current_app.config["DISPLAY_SIZE"]
    cache_dir = Path(current_app.config["IMAGE_CACHE_DIR"])
    path = cached_path(token, size, cache_dir)
    if not path.is_file():  # not rendered ahead: find the file and render it now
        row = run_transaction(
            engine(),
            lambda connection: connection.execute(IMAGE_FILE, {"token": token}).first(),
            read_only=True,
        )
        if row is None:
            abort(404)
        root = Path(row.path)
        source_file = (root / row.file).resolve()
        if root.resolve() not in source_file.parents or not source_file.is_file():
            abort(404)
        path = upscaled_path(source_file, token, size, cache_dir)
    response = send_file(path, mimetype="image/png", max_age=3600, etag=False, last_modified=None)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
