"""The gallery as static HTML pages: every exhibit's cat, verdict, mood and provenance.

This module only *renders*: a page of exhibits in, one HTML string out. Writing the pages (which
exhibits, where, the output folder's checks) is `installation.curation.export_sheet`.

Why pages, and why links instead of copies: an archive of 11,000 exhibits once made a 2.4 GB
folder and a single page that took a browser 44 s to draw. So a page holds at most `PAGE_SIZE`
exhibits (index.html the newest, then page-2.html, ...), shows each 64-px PNG scaled up by the
browser (`image-rendering: pixelated`, lazily loaded) and links to the 512-px copy and the audio
where they lie in the gallery folder. The output folder holds only .html and one .css file.

Must never: put an archive string into the page unescaped (every one goes through html.escape),
or show an os-fallback exhibit as quantum.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from installation.gallery import Exhibit
from installation.words import plural

PAGE_SIZE = 100  # exhibits per page: a browser draws a page of 100 lazy 64-px images at once
NAV_SPAN = 3  # numbered links shown either side of the current page (plus first and last)
STYLESHEET = "style.css"
INDEX = "index.html"

STYLE = """\
body { background:#111; color:#eee; font-family: Georgia, serif; margin: 2em; }
h1 { font-weight: normal; letter-spacing: .05em; }
nav { margin: 1.5em 0; font-family: monospace; }
nav a, nav span { margin-right: .6em; color: #9cc7ff; }
nav .current { color: #eee; font-weight: bold; }
.grid { display:grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 1.5em; }
.card { background:#1c1c1c; padding: 1em; border-radius: 6px; }
.card img { width: 256px; height: 256px; image-rendering: pixelated; display:block; margin:auto; }
.missing { width: 256px; height: 256px; margin:auto; display:flex; align-items:center;
           justify-content:center; text-align:center; border: 1px dashed #666; color:#999; }
.verdict { font-style: italic; margin: .8em 0; }
.motivated { color: #9fe29f; } .demotivated { color: #e2a49f; }
.meta { font-family: monospace; font-size: 11px; color: #999; word-break: break-all; }
.fallback { color: #ffb347; font-weight: bold; }
audio { width: 100%; }
"""

# A link from the page to a file of the gallery folder, or None when the file is missing.
LinkTo = Callable[[str], str | None]


def page_name(number: int) -> str:
    """The file of page `number` (1-based): the newest exhibits are index.html."""
    return INDEX if number == 1 else f"page-{number}.html"


def render_page(exhibits: Sequence[Exhibit], number: int, pages: int, total: int,
                exported: str, link: LinkTo) -> str:
    """One page: its exhibits' cards between two navigation bars."""
    nav = _nav(number, pages)
    cards = "".join(_card(ex, link) for ex in exhibits)
    where = f" · page {number} of {pages}" if pages > 1 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qcat gallery{html.escape(where)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{STYLESHEET}"></head><body>
<h1>Schrödinger's demotivational quantum cats</h1>
<p>{plural(total, "exhibit")}, newest first, exported {html.escape(exported)}{where}.</p>
{nav}
<div class="grid">
{cards}</div>
{nav}
</body></html>
"""


def _nav(number: int, pages: int) -> str:
    """Previous, next and numbered links; far pages collapse into an ellipsis."""
    if pages <= 1:
        return ""
    parts = []
    if number > 1:
        parts.append(f'<a href="{page_name(number - 1)}" rel="prev">&larr; newer</a>')
    shown = sorted({1, pages, *range(max(1, number - NAV_SPAN), min(pages, number + NAV_SPAN) + 1)})
    previous = 0
    for n in shown:
        if n > previous + 1:
            parts.append("<span>&hellip;</span>")
        if n == number:
            parts.append(f'<span class="current" aria-current="page">{n}</span>')
        else:
            parts.append(f'<a href="{page_name(n)}">{n}</a>')
        previous = n
    if number < pages:
        parts.append(f'<a href="{page_name(number + 1)}" rel="next">older &rarr;</a>')
    return f'<nav>{"".join(parts)}</nav>'


def _card(ex: Exhibit, link: LinkTo) -> str:
    e = html.escape
    if not ex.quantum:
        origin = '<span class="fallback">os-fallback: NOT quantum (the pool was empty)</span>'
    else:
        segments = ex.provenance.get("segments") or [{}]
        first = segments[0] if isinstance(segments[0], dict) else {}
        origin = f"{e(ex.source)}, fetched {e(str(first.get('request_time', '')))}"
    small, big = link(ex.png_path), link(ex.big_png_path)
    if small is None:
        picture = (f'<div class="missing">image missing:<br><code>qcat gallery repair {ex.id}'
                   "</code></div>")
    else:
        picture = (f'<img src="{e(small)}" width="256" height="256" loading="lazy" '
                   f'decoding="async" alt="cat {ex.id}">')
        if big is not None:
            picture = f'<a href="{e(big)}">{picture}</a>'
    audio = ""
    if ex.wav_path and (wav := link(ex.wav_path)) is not None:
        audio = f'<audio controls preload="none" src="{e(wav)}"></audio>'
    return f"""<div class="card">
{picture}
<div class="verdict {e(ex.mood)}">“{e(ex.verdict_text)}”</div>
{audio}
<div class="meta">#{ex.id} · {e(ex.mood)} · code {ex.verdict_code} · {e(ex.created)}<br>
entropy: {origin}<br>model {e(ex.model_sha256[:16])}… · engine {e(ex.engine)}</div>
</div>
"""
