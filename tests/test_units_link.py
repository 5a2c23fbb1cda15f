"""The units' byte pipe through real pseudo-terminals and pyserial URLs, and discovery.

A pty is what a simulated unit will sit behind, and a real USB CDC port behaves the same way to
pyserial; so the link is tested on a pty pair made here, and on pyserial's own `loop://`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from installation.errors import DeviceError
from installation.units.link import WCH_VID, Link, discover, hexdump


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_bytes_cross_a_real_pty_both_ways(pty_pair) -> None:
    master, path = pty_pair
    with Link.open(path) as link:
        link.write(b"\x00hello unit\x00")
        got = b""
        while len(got) < 12:
            got += os.read(master, 64)
        assert got == b"\x00hello unit\x00"
        os.write(master, bytes(range(1, 200)))
        received = b""
        while len(received) < 199:
            chunk = link.read(4096, timeout_s=1.0)
            assert chunk, "the link returned nothing although bytes were waiting"
            received += chunk
        assert received == bytes(range(1, 200))
        assert link.read(16, timeout_s=0.05) == b""  # silence is b"", not an error


def test_a_pyserial_url_is_a_port_too() -> None:
    with Link.open("loop://") as link:
        link.write(b"ping")
        assert link.read(4, timeout_s=1.0) == b"ping"


@pytest.mark.parametrize("port, says", [
    ("/dev/no-such-unit", "cannot open the port /dev/no-such-unit: no such device"),
    ("nonsense://x", "cannot open the port nonsense://x"),
])
def test_a_port_that_cannot_be_opened_is_one_sentence(port, says) -> None:
    with pytest.raises(DeviceError) as exc:
        Link.open(port)
    assert exc.value.message.startswith(says) and exc.value.hint
    assert exc.value.exit_code == 3


def test_a_unit_unplugged_while_reading_is_a_device_error() -> None:
    master, slave = os.openpty()
    link = Link.open(os.ttyname(slave))
    os.close(slave)
    os.close(master)  # the far side goes away, as a USB device pulled out
    try:
        with pytest.raises(DeviceError, match="failed while reading"):
            for _ in range(40):  # EIO shows on the next read
                link.read(16, timeout_s=0.05)
    finally:
        link.close()


def test_trace_is_a_hex_dump_of_both_directions_only_when_asked(pty_pair) -> None:
    master, path = pty_pair
    lines: list[str] = []
    with Link.open(path, trace=lines.append) as link:
        link.write(b"\x00AB\x01")
        os.read(master, 16)
        os.write(master, b"qcat\x00")
        threading.Event().wait(0.05)
        assert link.read(16, timeout_s=1.0) == b"qcat\x00"
    assert lines == ["-> 0000  00 41 42 01" + " " * 36 + "  .AB.",
                     "<- 0000  71 63 61 74 00" + " " * 33 + "  qcat."]
    assert hexdump("->", bytes(17))[1].startswith("-> 0010  00 ")


def test_discovery_lists_configured_ports_then_wch_usb_devices(tmp_path: Path) -> None:
    fake = [SimpleNamespace(device="/dev/ttyACM0", vid=WCH_VID, description="CH32H417 qcat",
                            serial_number="C0FFEE"),
            SimpleNamespace(device="/dev/ttyUSB0", vid=0x0403, description="FTDI", serial_number=""),
            SimpleNamespace(device="/dev/ttyACM1", vid=WCH_VID, description=None,
                            serial_number=None),
            SimpleNamespace(device="socket://10.0.0.9:7000", vid=WCH_VID, description="",
                            serial_number="")]
    found = discover(["socket://10.0.0.9:7000", "/dev/ttyS3", "/dev/ttyS3"],
                     comports=lambda: fake, by_id_dir=tmp_path / "no-udev-here")
    assert [(p.port, p.source) for p in found] == [
        ("socket://10.0.0.9:7000", "config"), ("/dev/ttyS3", "config"),
        ("/dev/ttyACM0", "usb"), ("/dev/ttyACM1", "usb")]
    assert found[2].as_dict() == {"port": "/dev/ttyACM0", "source": "usb",
                                  "description": "CH32H417 qcat", "serial_number": "C0FFEE",
                                  "device": "/dev/ttyACM0"}


def test_discovery_names_a_usb_unit_by_its_by_id_link_across_a_replug(tmp_path: Path) -> None:
    """udev's by-id name carries the USB serial: a unit plugged back as another ttyACM is found
    under the same port name (what a reconnecting worker opens), and a configured by-id path is
    not listed twice."""
    dev, by_id = tmp_path / "dev", tmp_path / "by-id"
    dev.mkdir()
    by_id.mkdir()
    for name in ("ttyACM0", "ttyACM1", "ttyACM2"):
        (dev / name).touch()
    link = by_id / "usb-WCH_qcat_cat_C0FFEE-if00"
    link.symlink_to(dev / "ttyACM0")

    def usb(device: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(device=device, vid=WCH_VID, description="qcat cat",
                                serial_number="C0FFEE")]

    before = discover([], comports=lambda: usb(str(dev / "ttyACM0")), by_id_dir=by_id)
    link.unlink()
    link.symlink_to(dev / "ttyACM2")  # unplugged, plugged back, enumerated as ttyACM2
    after = discover([], comports=lambda: usb(str(dev / "ttyACM2")), by_id_dir=by_id)
    assert [p.port for p in before] == [p.port for p in after] == [str(link)]
    assert (before[0].device, after[0].device) == (str(dev / "ttyACM0"), str(dev / "ttyACM2"))
    # a configured port that is the same device (by its link or its kernel name) is listed once
    assert [p.source for p in discover([str(link)], comports=lambda: usb(str(dev / "ttyACM2")),
                                       by_id_dir=by_id)] == ["config"]
    assert [p.source for p in discover([str(dev / "ttyACM2")],
                                       comports=lambda: usb(str(dev / "ttyACM2")),
                                       by_id_dir=by_id)] == ["config"]
