"""The stylesheet, the task page's script and the icon, carried inside the pages.

A rater is a first-time visitor who comes once: a browser that finds the stylesheet, the script
and the icon in separate files asks for each before it can show the page, and no cache of an
earlier visit spares it that. In the page they cost no request and no round trip (2.8 kB of
CSS, 6.5 kB of script, a 0.2 kB icon). The Content-Security-Policy admits exactly these: a
``'sha256-…'`` source for the inline stylesheet and for the script (CSP Level 2), and ``data:``
images for the icon; no other inline style or script runs.

The files live in ``study_app/static/`` and are read once, when the app is made.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

FOLDER = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class PageAssets:
    """What every page carries: ``css`` inside ``<style>``, ``script`` inside ``<script>`` (the
    task page), ``icon`` as the ``href`` of ``<link rel="icon">`` (a ``data:`` URL)."""

    css: Markup
    script: Markup
    icon: str

    @property
    def style_sources(self) -> tuple[str, ...]:
        """The CSP ``style-src`` sources that admit the inline stylesheet and nothing else."""
        return (csp_hash(self.css),)

    @property
    def script_sources(self) -> tuple[str, ...]:
        """The CSP ``script-src`` sources that admit the inline script and nothing else."""
        return (csp_hash(self.script),)


def csp_hash(text: str) -> str:
    """The CSP source of an inline ``<style>`` or ``<script>`` whose content is ``text``
    exactly (between the tags, whitespace included)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def load_page_assets(folder: Path = FOLDER) -> PageAssets:
    """``study.css``, ``rater.js`` and ``favicon.svg`` of ``folder``, ready to go into a page."""
    css = (folder / "study.css").read_text(encoding="utf-8")
    script = (folder / "rater.js").read_text(encoding="utf-8")
    # text inside <style> / <script> ends at the first closing tag (HTML parsing rules)
    for name, text, tag in (("study.css", css, "</style"), ("rater.js", script, "</script")):
        if tag in text.lower():
            raise ValueError(f"{folder / name} contains {tag!r}; it cannot go inside a page")
    icon = base64.b64encode((folder / "favicon.svg").read_bytes()).decode("ascii")
    return PageAssets(
        css=Markup(css), script=Markup(script), icon=f"data:image/svg+xml;base64,{icon}"
    )
