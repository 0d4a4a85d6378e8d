"""Telling a person how to open a page, and opening it when a browser is there."""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path


def file_url(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def open_hint(page: str | Path, run_dir: str | Path) -> list[str]:
    """The console lines that end a study: where the page is and two ways to open it."""
    return [f"report: {page}",
            f"open it: python -m interp.report {run_dir} --open   (or {file_url(page)} in a browser)"]


def graphical_display() -> bool:
    """Whether a graphical browser could show a window here (macOS and Windows always can; on
    Linux and other Unixes only with an X or Wayland display)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_page(page: str | Path) -> str:
    """Open ``page`` in the default browser when one can show it; returns what happened, in one
    line (a headless machine gets the file:// URL to open elsewhere)."""
    url = file_url(page)
    if not graphical_display():
        return f"no graphical browser here (no display); open {url} on a machine with one"
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return f"no browser found; open {url} in one"
    if not browser.open(url):
        return f"the browser did not start; open {url} in one"
    return f"opened {url}"
