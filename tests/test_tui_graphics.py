"""The cats through a terminal graphics protocol where the terminal has one (tui.graphics).

The decision (`choose_graphics`) runs in a fresh interpreter on a real pseudo-terminal whose other
end is this test playing the terminal: answering textual-image's queries as a Sixel terminal or
kitty would, or never answering (the Linux console, tmux without passthrough). Whether
`textual_image` was imported is read from that interpreter's sys.modules. The app side runs through
Pilot with a protocol forced (headless Textual cannot ask a terminal).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from installation import config as config_mod
from installation.errors import ConfigError
from installation.station import Station
from tests.tui_support import FROZEN_NOW, fixed_workspace, run_async
from tui.app import QcatApp
from tui.screens import DashboardScreen, GalleryScreen
from tui.widgets import CatPicture, ProtocolCatPicture, protocol_picture

ROOT = Path(__file__).resolve().parent.parent
CHILD = (
    "import json, sys, time\n"
    "from installation.commands.tui_cmd import choose_graphics\n"
    "t = time.monotonic()\n"
    "g = choose_graphics(sys.argv[1])\n"
    "print(json.dumps({'graphics': g, 'imported': 'textual_image' in sys.modules,\n"
    "                  'seconds': time.monotonic() - t}), file=sys.stderr)\n"
)
DA1_QUERY = b"\x1b[c"
TGP_QUERY = re.compile(rb"\x1b_Gi=(\d+),[^;]*;AAAA\x1b\\")
SIXEL_DA1 = b"\x1b[?62;4;22c"  # a VT220-class terminal with Sixel (4), as xterm -ti vt340 says
PLAIN_DA1 = b"\x1b[?62;22c"  # kitty: no Sixel
NEVER_S = 10.0  # a decision slower than this is a hang


def decide(setting: str = "auto", *, term: str = "xterm-256color", answer: str = "none",
           tty: bool = True, **env: str) -> tuple[dict[str, Any], bytes]:
    """Run `choose_graphics(setting)` in a fresh interpreter; its verdict, and every byte it wrote
    to the terminal. `answer`: "sixel", "tgp" (kitty) or "none" (a terminal that never answers)."""
    environ = {k: v for k, v in os.environ.items() if k != "TEXTUAL_DRIVER"}
    environ.update(TERM=term, **env)
    argv = [sys.executable, "-c", CHILD, setting]
    if not tty:
        done = subprocess.run(argv, cwd=ROOT, env=environ, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=NEVER_S)
        return json.loads(done.stderr.decode().strip().splitlines()[-1]), done.stdout
    master, slave = os.openpty()
    # rows, columns, and the pixel size (10 x 20 cells): no cell-size query needed
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 1600, 1000))
    proc = subprocess.Popen(argv, cwd=ROOT, env=environ, stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + NEVER_S
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk
            if DA1_QUERY in chunk and answer != "none":
                os.write(master, SIXEL_DA1 if answer == "sixel" else PLAIN_DA1)
            query = TGP_QUERY.search(chunk)
            if query and answer == "tgp":
                os.write(master, b"\x1b_Gi=" + query.group(1) + b";OK\x1b\\")
        stderr = proc.communicate(timeout=NEVER_S)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return json.loads(stderr.decode().strip().splitlines()[-1]), seen


# -- the decision ---------------------------------------------------------------------------------

def test_a_sixel_terminal_gets_sixel_and_kitty_gets_its_protocol() -> None:
    verdict, written = decide(answer="sixel")
    assert verdict == {**verdict, "graphics": "sixel", "imported": True}
    assert DA1_QUERY in written  # it really asked
    verdict, written = decide(answer="tgp")
    assert verdict["graphics"] == "tgp"
    assert TGP_QUERY.search(written)


def test_a_terminal_that_never_answers_gets_half_blocks_quickly_and_no_text() -> None:
    verdict, written = decide(answer="none")
    assert verdict["graphics"] == "halfblocks" and verdict["imported"]
    assert verdict["seconds"] < 2.0  # two queries of 0.1 s each, not a hang
    # only escape sequences went to the screen: nothing a person would read as garbage
    assert re.sub(rb"\x1b_G[^\x1b]*\x1b\\|\x1b\[[0-9;?]*[A-Za-z]", b"", written).strip() == b""


def test_the_linux_console_and_dumb_terminals_are_not_asked() -> None:
    for term in ("linux", "dumb"):
        verdict, written = decide(term=term, answer="sixel")
        assert verdict["graphics"] == "halfblocks"
        assert not verdict["imported"], f"TERM={term}: textual_image was imported"
        assert written == b""


def test_halfblocks_in_the_config_and_a_browser_session_are_not_asked() -> None:
    verdict, written = decide("halfblocks", answer="sixel")
    assert verdict["graphics"] == "halfblocks" and not verdict["imported"] and written == b""
    verdict, written = decide(answer="sixel", TEXTUAL_DRIVER="textual.drivers.web_driver:Web")
    assert verdict["graphics"] == "halfblocks" and not verdict["imported"] and written == b""


def test_not_a_terminal_gets_half_blocks_without_asking() -> None:
    verdict, written = decide(tty=False)
    assert verdict["graphics"] == "halfblocks" and not verdict["imported"]
    assert written == b""


def test_the_config_key_takes_auto_or_halfblocks_only(tmp_path: Path) -> None:
    assert config_mod.defaults()["tui.graphics"] == "auto"
    path = tmp_path / "config.toml"
    path.write_text('[tui]\ngraphics = "halfblocks"\n')
    assert config_mod.load(path)["tui.graphics"] == "halfblocks"
    path.write_text('[tui]\ngraphics = "sixel"\n')
    with pytest.raises(ConfigError) as caught:
        config_mod.load(path)
    assert "tui.graphics" in caught.value.message and "halfblocks" in caught.value.message


# -- the app with a protocol ----------------------------------------------------------------------

@pytest.fixture
def ws(qcat_home: Path) -> Any:
    return fixed_workspace(qcat_home, 2)


def _app(ws: Any, graphics: str, mode: str = "dashboard") -> QcatApp:
    station = Station(ws, [], clock=lambda: FROZEN_NOW)
    return QcatApp(station, mode=mode, now=lambda: FROZEN_NOW, graphics=graphics)


async def _until(pilot: Any, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 20.0
    while not predicate():
        assert time.monotonic() < deadline, f"not within 20 s: {what}"
        await pilot.pause(0.05)


@pytest.mark.parametrize("graphics", ["sixel", "tgp"])
@run_async
async def test_the_dashboard_cat_is_a_textual_image_in_the_half_blocks_box(
        ws: Any, graphics: str) -> None:
    from textual_image.widget import SixelImage, TGPImage

    app = _app(ws, graphics)
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "a first snapshot")
        picture = app.screen.query_one(CatPicture)
        await _until(pilot, lambda: picture.image is not None, "the cat")  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        assert isinstance(app.screen, DashboardScreen)
        assert isinstance(picture, ProtocolCatPicture)
        image = picture.image
        assert isinstance(image, SixelImage if graphics == "sixel" else TGPImage)
        assert image.display and (image.size.width, image.size.height) == (64, 32)
        shown: Any = image.image
        assert shown.size == (512, 512)
        # crisp: each of the cat's pixels became an 8 x 8 square of its own colour
        assert picture.rgb is not None
        assert shown.getpixel((8 * 5 + 7, 8 * 9)) == tuple(int(c) for c in picture.rgb[9, 5])
        newest = ws.open_gallery().query(limit=1)[0]
        caption = str(app.screen.query_one("#caption", Static).render())
        assert f"#{newest.id}" in caption and newest.verdict_text in caption
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


@run_async
async def test_the_gallery_cat_fills_the_screen_by_whole_scales(ws: Any) -> None:
    app = _app(ws, "sixel", mode="gallery")
    async with app.run_test(size=(160, 50)) as pilot:
        picture = app.screen.query_one(CatPicture)
        await _until(pilot, lambda: picture.image is not None, "the cat")  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        assert isinstance(app.screen, GalleryScreen)
        image = picture.image  # type: ignore[attr-defined]
        scale = picture._scale_now()
        assert scale >= 1
        assert (image.size.width, image.size.height) == (64 * scale, 32 * scale)
        assert image.region.height <= picture.region.height  # inside the widget, centred
        top_gap = image.region.y - picture.region.y
        bottom_gap = picture.region.bottom - image.region.bottom
        assert abs(top_gap - bottom_gap) <= 1
        assert "a " in str(app.screen.query_one("#mood", Static).render())
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.2)
        smaller = picture._scale_now()
        assert (image.size.width, image.size.height) == (64 * smaller, 32 * smaller)


def test_protocol_picture_keeps_pixels_crisp_and_bad_graphics_are_refused(ws: Any) -> None:
    import numpy as np

    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    big = protocol_picture(rgb)
    assert big.size == (512, 512)
    assert big.getpixel((7, 7)) == (255, 0, 0) and big.getpixel((8, 8)) == (0, 0, 0)
    with pytest.raises(ValueError, match="graphics must be one of"):
        _app(ws, "kitty")
