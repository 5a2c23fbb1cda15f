"""`qcat tui --web`: the dashboard served to a browser (textual-serve), really exercised.

The server runs on a free loopback port with one simulated unit, started once by the server.
A browser session is a websocket: the first one gets the dashboard (its title and the simulated
unit's link in the text the terminal is sent); a second one at the same time is refused by the
station lock (one session drives the units) and the server's console says why. Then headless
Chromium opens the page for real (driven over the DevTools protocol, because the terminal only
renders once its websocket has delivered bytes, in real time, which `--virtual-time-budget`
does not wait for) and its screenshot is a drawn dashboard, not a blank or waiting page.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="textual-serve (and aiohttp) not installed")
pytest.importorskip("textual_serve", reason="textual-serve is not installed")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
START_S = 90.0  # the fleet's first start may build the units' C library
SESSION_S = 30.0
REFUSED_S = 8.0  # a refused session sends nothing: this long shows it
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web(tmp_path: Path):
    """`qcat tui --web --sim 1 --paused` on a free port; yields (url, home, the server's log)."""
    home, port = tmp_path / "home", free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(QCAT_HOME=str(home), PYTHONPATH=str(REPO))
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "installation.cli", "tui", "--web", "--web-port", str(port),
             "--sim", "1", "--paused"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True)
    try:
        deadline = time.monotonic() + START_S
        while f"http://127.0.0.1:{port}/" not in log.read_text(errors="replace"):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        wait_listening(port, deadline)
        yield f"http://127.0.0.1:{port}/", home, log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode == 0, log.read_text()


def wait_listening(port: int, deadline: float) -> None:
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.2)


async def session_text(ws_url: str, until: list[str], timeout_s: float = SESSION_S,
                       hold: asyncio.Event | None = None,
                       up: asyncio.Event | None = None) -> str:
    """What a browser session's terminal is sent, as text, until every string in `until`
    appeared (or the session closed), then sets `up`; with `hold`, the session stays open until
    that is set."""
    seen = b""
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await ws.send_str(json.dumps(["resize", {"width": 160, "height": 48}]))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                seen += msg.data
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                break
            text = ANSI.sub(b"", seen).decode(errors="replace")
            if all(u in text for u in until):
                break
        if up is not None:
            up.set()
        if hold is not None:
            await hold.wait()
    return ANSI.sub(b"", seen).decode(errors="replace")


def test_browser_sessions_one_drives_the_units_a_second_is_refused(web) -> None:
    url, home, log = web
    ws_url = url.replace("http://", "ws://") + "ws?width=160&height=48"
    link = str(home / "run" / "sim-1")

    async def both() -> tuple[str, str]:
        hold, up = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(session_text(ws_url, ["qcat", link, "SIM-1 (firmware"],
                                                 hold=hold, up=up))
        await asyncio.wait_for(up.wait(), SESSION_S)  # its dashboard shows the unit connected
        second = await session_text(ws_url, ["already running"], timeout_s=REFUSED_S)
        hold.set()
        return await first, second

    first, second = asyncio.run(both())
    assert "qcat" in first and "SIM-1 (firmware" in first, first[-2000:]
    assert link in first, "the session's dashboard runs over the server's simulated unit"
    # the refusal is the session's stderr, which textual-serve writes to the server's console
    server_log = log.read_text(errors="replace")
    assert "is already running the units of" in server_log
    # the sessions were given the server's fleet, never one of their own
    assert not (home / "run" / "sim-2").exists()
    assert f"tui --port {link}" in " ".join(server_log.split())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it: "
                    "TEST_DEB_PACKAGES in the Makefile)")
def test_chromium_shows_the_dashboard(web, tmp_path: Path) -> None:
    from PIL import Image

    url, home, _ = web
    png = asyncio.run(chromium_screenshot(url, tmp_path / "profile"))
    (tmp_path / "dashboard.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1400, 900)
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 16, "a blank page"
    # textual-serve's waiting page is its dark background and one dialog; the dashboard fills
    # the window with panels: most of the top rows are no longer the page's background colour
    background = image.getpixel((5, image.size[1] - 5))
    top = [image.getpixel((x, y)) for x in range(0, 1400, 7) for y in range(0, 60, 3)]
    assert sum(p != background for p in top) > len(top) // 4, "the terminal was not drawn"


async def chromium_screenshot(url: str, profile: Path) -> bytes:
    """Open `url` in headless Chromium, wait until its terminal has drawn, screenshot it."""
    assert CHROMIUM
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1400,900", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        "--no-first-run", "about:blank", stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        devtools = ""
        while not devtools:
            line = (await asyncio.wait_for(proc.stderr.readline(), START_S)).decode()
            assert line, "chromium ended before it listened for DevTools"
            if "DevTools listening on " in line:
                devtools = line.split("DevTools listening on ", 1)[1].strip()
        port = devtools.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as cdp:
                calls = iter(range(1, 1 << 30))

                async def call(method: str, **params: object) -> dict:
                    n = next(calls)
                    await cdp.send_str(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        reply = json.loads((await cdp.receive(timeout=SESSION_S)).data)
                        if reply.get("id") == n:
                            assert "error" not in reply, reply
                            return dict(reply.get("result", {}))

                await call("Emulation.setDeviceMetricsOverride", width=1400, height=900,
                           deviceScaleFactor=1, mobile=False)
                await call("Page.navigate", url=url)
                # textual-serve marks the body once the terminal got its first byte
                deadline = time.monotonic() + SESSION_S
                while True:
                    got = await call("Runtime.evaluate", expression=(
                        "document.body && document.body.classList.contains('-first-byte')"),
                        returnByValue=True)
                    if got.get("result", {}).get("value") is True:
                        break
                    assert time.monotonic() < deadline, "the page's terminal never got a byte"
                    await asyncio.sleep(0.3)
                await asyncio.sleep(3.0)  # the dashboard's first frames, and the 0.3 s fade
                shot = await call("Page.captureScreenshot", format="png")
                return base64.b64decode(shot["data"])
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


def test_a_public_address_is_announced_loudly(tmp_path: Path) -> None:
    """Any address but loopback lets other machines operate the installation: said on stderr
    before anything is served (here the port is taken, so nothing is)."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "installation.cli", "--home",
                            str(tmp_path / "h"), "tui", "--web", "--host", "0.0.0.0",
                            "--web-port", str(port)], capture_output=True, text=True, cwd=REPO,
                           timeout=60, env={**os.environ, "TMPDIR": tempfile.gettempdir()})
    assert "WARNING" in r.stderr and "anyone who can reach 0.0.0.0" in r.stderr
    assert r.returncode == 3 and "cannot serve the dashboard on 0.0.0.0" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
