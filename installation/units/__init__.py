"""The units in the room: how qcat talks to cat and die units over USB serial (DESIGN.md §8).

The room, from the bytes up (each layer uses only the ones above it):

    protocol    the codec, pure: bytes in, frames and typed messages out; no port, no clock
                (esptool's slip_reader). Everything it knows comes from the one message table,
                firmware/common/protocol.toml, which the C firmware is generated from too.
    link        (next) one transport seam: a real port by path or pyserial URL (socket://,
                rfc2217://, loop://), or an object handed in; sequence numbers, replies with
                timeouts, an optional hex trace of every frame.
    discovery   (next) ports from the config and from serial.tools.list_ports (WCH, VID
                0x1A86), each asked for its HELLO.
    supervisor  (next) handshake with version and hash checks, heartbeats (lost after
                `missed_heartbeats`), reconnects, and the exhibit jobs: entropy drawn first, the
                job re-sent with the same bytes after a reconnect, every image compared with the
                golden render before it is archived.

The simulators (firmware/) run the units' own C code behind a pseudo-terminal, so everything here
is exercised on the identical code path a real unit would meet.

Keep this file free of imports: importing the package must not open ports or read tables.
"""
