"""Results pages: one self-contained HTML file per study run, from the run's own tables.

A study fills in a :class:`Page` (``blocks``: sections of text, tables, plotly figures, an
image gallery and a provenance block) and :func:`write_page` renders it with Jinja2 into a
single file that opens offline: plotly.js inlined once, images as ``data:`` URIs, the
page's own script (sortable tables, filters) inline, no CDN and no network request. Nothing
here knows a study (``python -m interp.report RUN_DIR`` picks the study's page).

Modules: ``blocks`` (the dataclasses), ``render`` (Jinja2 -> HTML), ``images`` (thumbnails
as data: URIs), ``opening`` (the console hint and ``--open``).
"""

from interp.pages.blocks import (Card, Cell, Code, Column, Gallery, Page, Plot, Provenance, Section,  # noqa: F401
                                 Table, Text)
from interp.pages.images import thumbnail_uri  # noqa: F401
from interp.pages.opening import file_url, open_hint, open_page  # noqa: F401
from interp.pages.render import render, write_page  # noqa: F401
