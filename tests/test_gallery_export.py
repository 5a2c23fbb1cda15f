"""The contact sheet scales: pages of at most 100 exhibits, newest first, images linked (never
copied), lazy loading; the demo shows only what it made; a bad output folder is one sentence.

Hundreds of rows are inserted directly with tiny files (tests.gallery_support.fill_gallery):
the contact sheet reads the archive, it does not render cats.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest

from installation import contact_sheet, curation
from installation.gallery import Gallery
from tests.gallery_support import fill_gallery, generate, synthetic_weights, write_clip_bank


class Links(HTMLParser):
    """Every img src, a href, audio src and each card's exhibit number on one page."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.audio: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        elif tag == "audio" and a.get("src"):
            self.audio.append(str(a["src"]))


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def resolves(page: Path, url: str) -> Path:
    target = (page.parent / urllib.parse.unquote(url)).resolve()
    assert target.is_file(), f"{page.name}: {url} does not resolve to a file"
    return target


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "home" / "gallery.sqlite", tmp_path / "home" / "gallery") as g:
        yield g


def test_pages_of_at_most_100_newest_first_with_links_not_copies(gallery, tmp_path):
    fill_gallery(gallery, 250)
    out = tmp_path / "elsewhere" / "sheet"
    out.parent.mkdir()
    report = curation.export_sheet(gallery, out)
    assert [p.name for p in report.pages] == ["index.html", "page-2.html", "page-3.html"]
    assert report.exhibits == 250
    # only .html and .css: not one image copied
    assert sorted(p.suffix for p in out.iterdir()) == [".css", ".html", ".html", ".html"]
    seen: list[int] = []
    for page in report.pages:
        links = parse(page)
        assert 1 <= len(links.imgs) <= 100
        for img in links.imgs:
            assert img["loading"] == "lazy"
            target = resolves(page, str(img["src"]))
            assert target.parent == gallery.files_dir.resolve()
            assert not str(img["src"]).startswith("/")  # relative, so the folders can move together
        for href in links.hrefs:
            resolves(page, href)  # navigation and 512-px links all lead somewhere real
        seen += [int(str(img["alt"]).split()[-1]) for img in links.imgs]
    assert seen == list(range(250, 0, -1))  # every exhibit once, newest first across pages
    first = (out / "index.html").read_text()
    assert "250 exhibits, newest first" in first and "page 1 of 3" in first
    assert "Verdict number 249 &lt;b&gt;escaped&lt;/b&gt;." in first  # archive text escaped
    assert 'href="page-2.html" rel="next"' in first and 'rel="prev"' not in first
    middle = (out / "page-2.html").read_text()
    assert 'href="index.html" rel="prev"' in middle and 'href="page-3.html" rel="next"' in middle


def test_a_shorter_export_removes_stale_pages_and_a_missing_image_is_said(gallery, tmp_path):
    fill_gallery(gallery, 150)
    out = tmp_path / "sheet"
    curation.export_sheet(gallery, out)
    assert (out / "page-2.html").exists()
    (out / "page-2.html.keep").write_text("not ours")
    gallery.path("fill-000149.png").unlink()
    report = curation.export_sheet(gallery, out, exhibit_ids=[150, 3])
    assert report.exhibits == 2 and report.removed_stale == [out / "page-2.html"]
    assert (out / "page-2.html.keep").exists()
    page = (out / "index.html").read_text()
    assert "2 exhibits" in page and "image missing" in page and "qcat gallery repair 150" in page
    assert len(parse(out / "index.html").imgs) == 1


def test_nav_collapses_far_pages():
    nav = contact_sheet._nav(10, 40)
    numbers = [int(n) for n in re.findall(r">(\d+)<", nav)]
    assert numbers == [1, 7, 8, 9, 10, 11, 12, 13, 40] and nav.count("&hellip;") == 2


def test_one_exhibit_is_singular(gallery, tmp_path):
    fill_gallery(gallery, 1)
    report = curation.export_sheet(gallery, tmp_path / "one")
    assert report.summary().endswith("(1 exhibit on 1 page; open it in a browser)")
    page = (tmp_path / "one" / "index.html").read_text()
    assert "1 exhibit, newest first" in page and "<nav>" not in page


def test_export_onto_a_file_or_into_a_missing_parent_is_one_sentence(run_qcat, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    onto_file = run_qcat("gallery", "export", a_file)
    assert onto_file.code == 2 and f"{a_file} is a file, not a folder" in onto_file.err
    assert a_file.read_text() == "keep me"
    no_parent = run_qcat("gallery", "export", tmp_path / "no" / "such" / "sheet")
    assert no_parent.code == 2
    assert f"the folder {tmp_path / 'no' / 'such'} does not exist" in no_parent.err
    assert not (tmp_path / "no").exists()
    for r in (onto_file, no_parent):
        assert r.err.startswith("qcat: error: ") and "Traceback" not in r.err


def test_cli_export_reports_pages(run_qcat, qcat_home, tmp_path):
    with Gallery(qcat_home / "gallery.sqlite", qcat_home / "gallery") as g:
        fill_gallery(g, 101)
    r = run_qcat("gallery", "export", tmp_path / "sheet")
    assert r.code == 0 and "(101 exhibits on 2 pages; open it in a browser)" in r.out


def test_demo_exports_only_what_it_made(qcat_subprocess, qcat_home, tmp_path):
    weights = synthetic_weights(tmp_path)
    with Gallery(qcat_home / "gallery.sqlite", qcat_home / "gallery") as g:
        fill_gallery(g, 120)  # an existing gallery the demo must not re-export
    cfg = qcat_home / "qcat.toml"
    cfg.write_text(f'[models]\nweights = "{weights}"\n[engine]\ndefault = "numpy"\n')
    r = qcat_subprocess("demo", "--count", "2", "--no-speech")
    assert r.code == 0, r.err
    sheet = qcat_home / "contact-sheet"
    assert sorted(p.name for p in sheet.iterdir()) == ["index.html", "style.css"]
    links = parse(sheet / "index.html")
    assert [img["alt"] for img in links.imgs] == ["cat 122", "cat 121"]
    for img in links.imgs:
        resolves(sheet / "index.html", str(img["src"]))


def test_real_exhibits_link_their_audio(run_qcat, qcat_home, tmp_path):
    write_clip_bank(qcat_home / "builds" / "verdicts.qcv")
    [made] = generate(run_qcat, synthetic_weights(tmp_path), 1)
    r = run_qcat("gallery", "export", tmp_path / "sheet")
    assert r.code == 0
    links = parse(tmp_path / "sheet" / "index.html")
    [audio] = links.audio
    assert resolves(tmp_path / "sheet" / "index.html", audio).name == made["wav_path"]
