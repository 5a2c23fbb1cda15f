"""A unit's byte pipe: a serial port opened by path or pyserial URL, and where to find units.

The one transport seam (esptool, mpremote, pyserial): everything above this module reads and writes
bytes through a `Link` and never knows whether the other end is a CH32H417 on USB, a simulator
behind a pseudo-terminal, `socket://host:port`, `rfc2217://...` or pyserial's `loop://`. Framing is
not here (`installation.units.protocol` is pure: bytes in, frames out); neither is any timing policy
beyond the read timeout the caller asks for.

`--trace` asks for a hex dump of every byte both ways; it is made only when asked (a `trace`
callback), never formatted otherwise.

Discovery: the configured ports (config `units.ports`, paths or URLs) first, then every USB serial
device whose vendor is WCH (VID 0x1A86: the CH32 parts' own USB and the CH340/CH343 bridges),
named by its `/dev/serial/by-id/` link where udev made one: that name carries the unit's USB serial
number, so a unit unplugged and plugged back (perhaps as ttyACM1 instead of ttyACM0) is found again
under the same port name, and a worker reconnecting to it finds it.
"""

from __future__ import annotations

import contextlib
import os
import termios
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import serial
import serial.tools.list_ports

from installation.errors import DeviceError

WCH_VID = 0x1A86
# The units' USB CDC ignores the rate, a CH340 bridge does not: one fixed, documented rate.
BAUDRATE = 921_600
# Longest single blocking read; callers loop with their own deadlines.
READ_SLICE_S = 0.05
TRACE_WIDTH = 16
# udev's stable names for USB serial devices (absent where there is no udev, e.g. in containers).
BY_ID_DIR = Path("/dev/serial/by-id")

TraceFn = Callable[[str], None]


@dataclass(frozen=True)
class PortInfo:
    """A place a unit may be: where it was found, and what the USB descriptor says."""

    port: str
    source: str  # "config" or "usb"
    description: str = ""
    serial_number: str = ""
    device: str = ""  # the kernel's name for it today (/dev/ttyACM0), when `port` is a by-id link

    def as_dict(self) -> dict[str, str]:
        return {"port": self.port, "source": self.source, "description": self.description,
                "serial_number": self.serial_number, "device": self.device or self.port}


def stable_names(by_id_dir: Path = BY_ID_DIR) -> dict[str, str]:
    """Kernel device path -> its udev by-id link (empty where udev made none)."""
    names: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for link in sorted(by_id_dir.iterdir()):
            names.setdefault(os.path.realpath(link), str(link))
    return names


def discover(configured: Iterable[str] = (), *,
             comports: Callable[[], Iterable[object]] | None = None,
             by_id_dir: Path = BY_ID_DIR) -> list[PortInfo]:
    """Configured ports first (as given), then WCH USB serial devices not already listed, each
    by its by-id link when there is one. `comports` and `by_id_dir` are injectable for tests
    (defaults: pyserial's list_ports and /dev/serial/by-id)."""
    found = [PortInfo(p, "config") for p in dict.fromkeys(configured)]
    seen = {p.port for p in found} | {os.path.realpath(p.port) for p in found
                                       if p.port.startswith("/")}
    stable = stable_names(by_id_dir)
    for info in (comports or serial.tools.list_ports.comports)():
        device = getattr(info, "device", "")
        if getattr(info, "vid", None) != WCH_VID or not device:
            continue
        port = stable.get(os.path.realpath(device), device)
        if seen & {device, port, os.path.realpath(device)}:
            continue
        seen.update((device, port))
        found.append(PortInfo(port, "usb", getattr(info, "description", "") or "",
                              getattr(info, "serial_number", "") or "",
                              device if port != device else ""))
    return found


def resolve_ports(given: Sequence[str], configured: Sequence[str],
                  discover_ports: Callable[[Sequence[str]], list[str]] | None = None) -> list[str]:
    """The ports to supervise: --port (as given, once each), else units.ports, else the units
    discovered on USB (`qcat units run`, `qcat tui`, `qcat kiosk`)."""
    if given:
        return list(dict.fromkeys(given))
    if discover_ports is None:
        return [p.port for p in discover(configured)]
    return discover_ports(configured)


def hexdump(direction: str, data: bytes) -> list[str]:
    """`--trace` lines for one chunk: direction ("->" sent, "<-" received), offset, hex, ASCII."""
    lines = []
    for at in range(0, len(data), TRACE_WIDTH):
        chunk = data[at:at + TRACE_WIDTH]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{direction} {at:04x}  {chunk.hex(' '):<{TRACE_WIDTH * 3 - 1}}  {text}")
    return lines


class Link:
    """An open port. `Link.open(port)` by path or URL; `read(n, timeout_s)`, `write(data)`."""

    def __init__(self, port: str, handle: serial.SerialBase, trace: TraceFn | None = None) -> None:
        self.port = port
        self._serial = handle
        self.trace = trace  # may be switched on and off while the link is open

    @classmethod
    def open(cls, port: str, *, baudrate: int = BAUDRATE, trace: TraceFn | None = None) -> Link:
        try:
            handle = serial.serial_for_url(port, baudrate=baudrate, timeout=READ_SLICE_S,
                                           write_timeout=2.0)
        except serial.SerialException as exc:
            raise DeviceError(f"cannot open the port {port}: {_reason(exc)}",
                              hint=_open_hint(exc)) from None
        except ValueError as exc:  # a malformed URL or setting
            raise DeviceError(f"cannot open the port {port}: {exc}",
                              hint="give a device path (/dev/ttyACM0) or a pyserial URL "
                                   "(socket://host:port, rfc2217://host:port, loop://)") from None
        return cls(port, handle, trace)

    def write(self, data: bytes) -> None:
        trace = self.trace  # (read once: another thread may switch it off meanwhile)
        if trace:
            for line in hexdump("->", data):
                trace(line)
        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialException, OSError, termios.error) as exc:
            raise DeviceError(f"the port {self.port} failed while writing: {_reason(exc)}",
                              hint="the unit may have been unplugged") from None

    def read(self, max_bytes: int = 4096, timeout_s: float = READ_SLICE_S) -> bytes:
        """Whatever arrives within `timeout_s` (at least one byte when any came), up to
        `max_bytes`; b"" when nothing did."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                waiting = self._serial.in_waiting
                data = self._serial.read(min(max_bytes, max(1, waiting)))
                if data or time.monotonic() >= deadline:
                    break
        except (serial.SerialException, OSError, termios.error) as exc:
            raise DeviceError(f"the port {self.port} failed while reading: {_reason(exc)}",
                              hint="the unit may have been unplugged") from None
        trace = self.trace
        if data and trace:
            for line in hexdump("<-", data):
                trace(line)
        return bytes(data)

    def close(self) -> None:
        # closing a port whose device vanished: nothing left to do
        with contextlib.suppress(serial.SerialException, OSError, termios.error):
            self._serial.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Link({self.port!r})"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # pyserial says "[Errno 2] could not open port /dev/x: [Errno 2] No such file or directory: ..."
    if "No such file or directory" in text:
        return "no such device"
    if "Permission denied" in text:
        return "permission denied"
    if "Connection refused" in text:
        return "connection refused"
    if "Input/output error" in text or "(5, " in text or "device reports readiness to read but returned no data" \
            in text:
        return "the device is gone (unplugged?)"
    return text.split(": [Errno")[0] if ": [Errno" in text else text


def _open_hint(exc: BaseException) -> str:
    text = str(exc)
    if "Permission denied" in text:
        return "add your user to the dialout group (sudo usermod -aG dialout $USER), then log in again"
    if "No such file or directory" in text:
        return "`qcat units list` shows the ports where units were found; is the unit plugged in?"
    return "check the port name or URL"
