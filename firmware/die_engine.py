"""ctypes binding of the die unit's C decoder (firmware/die/), for tests and the controller.

`DieEngine(packed, bias, shift, label_shift)` hands a model's arrays (`models.die_reference`'s
`DieModel.engine_arrays()`; firmware may not import models) to the same C the CH32V003 runs
(die_engine.c, host build) and `run(z, pips)` renders a batch of faces as SSD1306 pages, with
every layer gathered back into whole (C, H, W) maps when asked. The host wrapper (die_host.c)
checks on every run that a halo row recomputed by the next band equals the first computation.
The library is built and loaded by `firmware.cat_engine.open_library` (`make host`).

Must never import torch, textual or `installation.*` other than the ground modules: this module
is on the runtime path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from firmware.cat_engine import open_library

LIBRARY_NAME = "libdieengine.so"
# die_engine.h: DIE_LAYERS, DIE_NZ, DIE_PAGE_BYTES (the struct size check catches a change of
# the first; the others are the engine's fixed interface).
LAYERS = 5
NZ = 8
PAGE_BYTES = 128
HALO_DIFFERS = 100  # DIE_HOST_E_HALO in die_host.c
ERRORS = {1: "the pip count is outside 1..6", 2: "a shift in the model is over 24",
          HALO_DIFFERS: "a band recomputed a halo row differently (a banding bug)"}


class DieModelC(ctypes.Structure):
    """Mirror of die_model_t (die_engine.h)."""

    _fields_ = [("weights", ctypes.c_void_p * LAYERS),
                ("bias", ctypes.c_void_p * LAYERS),
                ("shift", ctypes.c_void_p * LAYERS),
                ("label_shift", ctypes.c_uint32)]


def _check_sizes(lib: ctypes.CDLL) -> None:
    if lib.die_host_model_bytes() != ctypes.sizeof(DieModelC):
        raise RuntimeError("die_model_t and its ctypes mirror differ in size: rebuild")


def load_library() -> ctypes.CDLL:
    u32, vp = ctypes.c_uint32, ctypes.c_void_p
    return open_library(LIBRARY_NAME, (
        ("die_host_layer_bytes", u32, []),
        ("die_host_arena_bytes", u32, []),
        ("die_host_model_bytes", u32, []),
        ("die_host_shape", u32, [u32, u32]),
        ("die_host_run", ctypes.c_int, [vp, u32, vp, vp, vp, vp]),
    ), check=_check_sizes)


def arena_bytes() -> int:
    """sizeof(die_arena_t): the engine's static RAM on the unit."""
    return int(load_library().die_host_arena_bytes())


class DieEngineError(RuntimeError):
    """The C engine refused (a bug in the caller or in the engine, never a user's mistake)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"die engine: {ERRORS.get(code, 'unknown error')} [code {code}]")
        self.code = code


class DieEngine:
    """One model's arrays pinned for the C engine."""

    def __init__(self, packed: Sequence[bytes], bias: Sequence[np.ndarray],
                 shift: Sequence[np.ndarray], label_shift: int) -> None:
        """packed: each layer's packed nibbles; bias (int32) and shift (uint8) per output
        channel; the arrays must already be checked (`DieModel.check`): C reads them blindly."""
        if not len(packed) == len(bias) == len(shift) == LAYERS:
            raise ValueError(f"the die engine takes {LAYERS} layers")
        self._lib = load_library()
        # Keep the buffers alive as long as the struct points at them.
        self._keep: list[np.ndarray] = []
        c = DieModelC()
        for i in range(LAYERS):
            w = np.frombuffer(packed[i], dtype=np.uint8).copy()
            b = np.ascontiguousarray(bias[i], dtype=np.int32)
            s = np.ascontiguousarray(shift[i], dtype=np.uint8)
            self._keep += [w, b, s]
            c.weights[i], c.bias[i], c.shift[i] = w.ctypes.data, b.ctypes.data, s.ctypes.data
        c.label_shift = label_shift
        self._model = c

    @property
    def c_model(self) -> DieModelC:
        """The die_model_t the C reads (valid while this engine lives): what the die unit's
        core (firmware.die_unit) takes to run another decoder than the one compiled in."""
        return self._model

    def run(self, z: np.ndarray, pips: np.ndarray | int,
            layers: bool = False) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """z (B, NZ) int8, pips (B,) or one int -> pages (B, 128) uint8 and, when `layers`,
        layers 1-4 as (B, C, H, H) uint8 (the face itself is in the pages)."""
        z = np.ascontiguousarray(np.atleast_2d(z))
        if z.dtype != np.int8 or z.shape[1] != NZ:
            raise ValueError(f"z must be int8 (B, {NZ}), got {z.dtype} {z.shape}")
        n = z.shape[0]
        p = np.ascontiguousarray(np.broadcast_to(np.asarray(pips), (n,)), dtype=np.uint8)
        out = np.zeros((n, PAGE_BYTES), dtype=np.uint8)
        flat = (np.zeros((n, int(self._lib.die_host_layer_bytes())), dtype=np.uint8)
                if layers else None)
        rc = self._lib.die_host_run(ctypes.byref(self._model), n, z.ctypes.data, p.ctypes.data,
                                    out.ctypes.data, flat.ctypes.data if flat is not None else None)
        if rc != 0:
            raise DieEngineError(rc)
        maps = None
        if flat is not None:
            maps, start = [], 0
            for layer in range(1, LAYERS):
                c, h = (int(self._lib.die_host_shape(layer, what)) for what in (0, 1))
                maps.append(flat[:, start:start + c * h * h].reshape(n, c, h, h))
                start += c * h * h
        return out, maps
