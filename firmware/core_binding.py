"""What the cat unit's and the die unit's ctypes bindings share (firmware/cat_unit.py,
firmware/die_unit.py): driving a C firmware core held in a buffer (`rx`, `poll`, `line_reset`,
`state`) and the callbacks both boards have (the serial line and the clock).

A Python exception raised inside a callback cannot cross the C frames above it: it is kept and
raised again as soon as the C call returns (`_keep`, `_raise_kept`).
"""

from __future__ import annotations

import ctypes
from typing import Any, ClassVar, Protocol


class SerialBoard(Protocol):
    def write(self, frame: bytes) -> None: ...

    def millis(self) -> int: ...


class CoreBinding:
    """A subclass sets PREFIX (the C functions are `<PREFIX>_rx`, `_poll`, `_line_reset`,
    `_host_state`) and, in its __init__, `_lib`, `_board`, `_unit` and `_error = None`."""

    PREFIX: ClassVar[str]
    _lib: Any
    _board: SerialBoard
    _unit: Any
    _error: BaseException | None

    def _c(self, name: str) -> Any:
        return getattr(self._lib, f"{self.PREFIX}_{name}")

    def rx(self, data: bytes) -> None:
        """Bytes from the controller; every frame they complete is answered (through write)."""
        if data:
            self._c("rx")(self._unit, bytes(data), len(data))
            self._raise_kept()

    def poll(self) -> int:
        """Due work; the milliseconds until the unit next wants to be polled."""
        wait = int(self._c("poll")(self._unit))
        self._raise_kept()
        return wait

    def line_reset(self) -> None:
        """The line was opened again: the core forgets a half-received frame."""
        self._c("line_reset")(self._unit)

    @property
    def state(self) -> int:
        """The unit's state, a code of the protocol table's states (QP_STATE_*)."""
        return int(self._c("host_state")(self._unit))

    def _keep(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _raise_kept(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _on_write(self, _ctx: int | None, data: ctypes._Pointer, n: int) -> None:
        try:
            self._board.write(ctypes.string_at(data, n))
        except BaseException as exc:  # noqa: BLE001 (re-raised after the C call returns)
            self._keep(exc)

    def _on_millis(self, _ctx: int | None) -> int:
        try:
            return int(self._board.millis()) & 0xFFFFFFFF
        except BaseException as exc:  # noqa: BLE001
            self._keep(exc)
            return 0
