"""The gallery as a static HTML contact sheet: every exhibit's cat, verdict, mood and provenance.

One folder (index.html + the images and audio it shows) that opens in any browser with no server
and no network. Every string from the archive is HTML-escaped.
"""

from __future__ import annotations

import html
import shutil
from datetime import UTC, datetime
from pathlib import Path

from installation.files import write_atomic
from installation.gallery import Exhibit, Gallery

STYLE = """
body { background:#111; color:#eee; font-family: Georgia, serif; margin: 2em; }
h1 { font-weight: normal; letter-spacing: .05em; }
.grid { display:grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 1.5em; }
.card { background:#1c1c1c; padding: 1em; border-radius: 6px; }
.card img { width: 256px; height: 256px; image-rendering: pixelated; display:block; margin:auto; }
.verdict { font-style: italic; margin: .8em 0; }
.motivated { color: #9fe29f; } .demotivated { color: #e2a49f; }
.meta { font-family: monospace; font-size: 11px; color: #999; word-break: break-all; }
.fallback { color: #ffb347; font-weight: bold; }
audio { width: 100%; }
"""


def export(gallery: Gallery, out_dir: Path) -> Path:
    """Write `out_dir/index.html` and copy each exhibit's files beside it. Returns the page."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exhibits = list(gallery.all())
    cards = []
    for ex in exhibits:
        for rel in (ex.big_png_path, ex.wav_path):
            if rel and gallery.path(rel).exists():
                shutil.copyfile(gallery.path(rel), out_dir / rel)
        cards.append(_card(ex))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qcat gallery</title>
<style>{STYLE}</style></head><body>
<h1>Schrödinger's demotivational quantum cats</h1>
<p>{len(exhibits)} exhibits, exported {now}.</p>
<div class="grid">
{"".join(cards)}
</div></body></html>
"""
    index = out_dir / "index.html"
    write_atomic(index, page.encode("utf-8"))
    return index


def _card(ex: Exhibit) -> str:
    e = html.escape
    prov = ex.provenance
    if ex.source == "os-fallback":
        origin = '<span class="fallback">os-fallback: NOT quantum (the pool was empty)</span>'
    else:
        segments = prov.get("segments") or [{}]
        fetched = segments[0].get("request_time", "")
        origin = f"{e(ex.source)}, fetched {e(str(fetched))}"
    audio = f'<audio controls src="{e(ex.wav_path)}"></audio>' if ex.wav_path else ""
    return f"""<div class="card">
<img src="{e(ex.big_png_path)}" alt="cat {ex.id}">
<div class="verdict {e(ex.mood)}">“{e(ex.verdict_text)}”</div>
{audio}
<div class="meta">#{ex.id} · {e(ex.mood)} · code {ex.verdict_code} · {e(ex.created)}<br>
entropy: {origin}<br>model {e(ex.model_sha256[:16])}… · engine {e(ex.engine)}</div>
</div>
"""
