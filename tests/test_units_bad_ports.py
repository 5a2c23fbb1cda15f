"""Ports that are not qcat units, through a real pseudo-terminal and the real CLI.

Silence, another device's text, frames with bad CRCs, a unit speaking a newer protocol: each is one
sentence naming the port, exit 3, no traceback. The far end here is a few lines of test code
writing fixed bytes into the pty's master side: a stand-in for *other* devices, not a copy of the
unit (the unit's behaviour is only ever its own C code, in the simulator tests).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from installation.units import protocol as qp


@pytest.fixture
def far_end():
    """A pty; `answer(bytes)` makes its far end reply with those bytes to whatever it receives."""
    master, slave = os.openpty()
    replies: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        os.set_blocking(master, False)
        while not stop.is_set():
            try:
                got = os.read(master, 4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                return
            if got and replies:
                os.write(master, replies[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield os.ttyname(slave), replies.append
    stop.set()
    thread.join(1)
    os.close(master)
    os.close(slave)


def _hello(protocol: int) -> bytes:
    msg = qp.message("HELLO", protocol=protocol, kind=qp.UnitKind["CAT"],
                     serial=b"FUTURE".ljust(16, b"\0"), firmware=0x020000,
                     weights_sha256=bytes(32), clips_sha256=bytes(32), max_payload=1030)
    # a unit of another version frames its HELLO under its own version byte
    frame = qp.encode_message(msg, 1)
    if protocol != qp.VERSION:
        raw = bytearray(qp.cobs_decode(frame[:-1]))
        raw[0] = protocol
        raw[-2:] = qp.crc16(bytes(raw[:-2])).to_bytes(2, "little")
        frame = qp.cobs_encode(bytes(raw)) + b"\0"
    return frame


@pytest.mark.parametrize("reply, says", [
    (None, "did not answer a HELLO within 3 s"),
    (b"AT+OK\r\nready> ", "answered, but not as a qcat unit"),
    (b"\x05\x01\x02\x03\x04\x00", "answered, but not as a qcat unit"),
])
def test_a_port_that_is_not_a_unit_is_one_sentence(run_qcat, far_end, reply, says) -> None:
    port, answer = far_end
    if reply is not None:
        answer(reply)
    r = run_qcat("units", "ping", port)
    assert r.code == 3, (r.out, r.err)
    first = r.err.splitlines()[0]
    assert first.startswith(f"qcat: error: {port} ") and says in first, r.err
    assert "Traceback" not in r.err


def test_a_unit_speaking_a_newer_protocol_is_refused(run_qcat, far_end) -> None:
    port, answer = far_end
    answer(_hello(qp.VERSION + 1))
    r = run_qcat("units", "ping", port)
    assert r.code == 3 and "Traceback" not in r.err
    assert "newer" in r.err or "version" in r.err, r.err


def test_trace_dumps_the_hello_both_ways(run_qcat, far_end) -> None:
    port, answer = far_end
    answer(b"garbage")
    r = run_qcat("units", "ping", port, "--trace")
    assert r.code == 3
    assert any(line.startswith("-> 0000  ") for line in r.err.splitlines())
    assert any(line.startswith("<- 0000  67") for line in r.err.splitlines()), r.err
    assert "it sent 7 bytes, none of them a HELLO frame" in r.err


def test_units_list_asks_every_port_at_once(qcat_home) -> None:
    """A silent port costs its handshake timeout; `units list` asks all ports together, so a
    room with dead ports lists in one timeout, not one per port. Each silent pty's far end notes
    when the HELLO reached it: asked one after another, they would be a timeout apart."""
    from installation import config as config_mod
    from installation.paths import Home
    from installation.units.link import PortInfo
    from installation.units.probe import CardHashes, survey
    from installation.workspace import Workspace
    from tests.cat_sim_support import cat_sim

    ptys = [os.openpty() for _ in range(3)]
    heard: dict[int, float] = {}

    def listen(i: int, master: int) -> None:
        if os.read(master, 64):
            heard[i] = time.monotonic()

    threads = [threading.Thread(target=listen, args=(i, m), daemon=True)
               for i, (m, _) in enumerate(ptys)]
    for t in threads:
        t.start()
    ws = Workspace.open(Home(qcat_home), config_mod.defaults())
    try:
        with cat_sim(qcat_home, "--serial", "LISTED") as sim:
            places = [PortInfo(os.ttyname(s), "config") for _, s in ptys[:2]]
            places += [PortInfo(sim.path, "config"), PortInfo(os.ttyname(ptys[2][1]), "config")]
            rows = survey(places, CardHashes.of(ws))
    finally:
        for m, s in ptys:
            os.close(m)
            os.close(s)
    assert [r["port"] for r in rows] == [p.port for p in places]  # in the order given
    assert [r["state"] for r in rows] == ["unreachable", "unreachable", "ready", "unreachable"]
    assert rows[2]["name"] == "unit:cat:LISTED" and rows[2]["weights_match"] is True
    assert "did not answer a HELLO" in rows[0]["error"]
    assert len(heard) == 3
    assert max(heard.values()) - min(heard.values()) < 3.0  # HANDSHAKE timeout: all asked at once
