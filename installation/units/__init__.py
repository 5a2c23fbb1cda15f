"""The units in the room: how qcat talks to cat and die units over USB serial (DESIGN.md §8).

The room, from the bytes up (each layer uses only the ones above it):

    protocol    the codec, pure: bytes in, frames and typed messages out; no port, no clock
                (esptool's slip_reader). Everything it knows comes from the one message table,
                firmware/common/protocol.toml, which the C firmware is generated from too.
    link        one transport seam: a real port by path or pyserial URL (socket://,
                rfc2217://, loop://); an optional hex trace of every byte (`--trace`); and
                discovery: ports from the config, then serial.tools.list_ports (WCH, VID 0x1A86).
    supervisor  (next) handshake with version and hash checks, heartbeats (lost after
                `missed_heartbeats`), reconnects, and the exhibit jobs: entropy drawn first, the
                job re-sent with the same bytes after a reconnect, every image compared with the
                golden render before it is archived.

The simulators (firmware/) run the units' own C code behind a pseudo-terminal, so everything here
is exercised on the identical code path a real unit would meet.

Keep this file free of imports: importing the package must not open ports or read tables.
"""
