"""The die decoder's golden integer reference, its weight container and its generated C header.

The die unit (CH32V003: RV32EC without a multiplier, 16 KB flash, 2 KB SRAM) draws a 32x32 1-bit
face from an int8 latent and a pip count with the decoder of a conditional VAE, in the seed's
spirit (FC, then four transposed convolutions to 32x32). docs/formats.md, "The die decoder",
is the contract; this module is its executable form, and firmware/die/die_engine.c must match it
byte for byte on every layer:

    layer  what                              output       weights (4-bit)
    1      FC, z (8 int8) + one-hot pips (6)  16 x 2 x 2    64 x 14 =     896
    2      ConvTranspose k4 s2 p1, ReLU       16 x 4 x 4    16 x 16 x 16 = 4,096
    3      ConvTranspose k4 s2 p1, ReLU       8 x 8 x 8      8 x 16 x 16 = 2,048
    4      ConvTranspose k4 s2 p1, ReLU       4 x 16 x 16    4 x 8 x 16 =    512
    5      ConvTranspose k4 s2 p1, sign       1 x 32 x 32    1 x 4 x 16 =     64
                                                              total        7,616

Arithmetic (integers only; no multiply on the unit, so weights are 4-bit sign-magnitude -7..7
and scales are right shifts): acc = bias[o] + sum(weight * input); layers 1-4 give
`0 if acc <= 0 else min((acc + (2^s >> 1)) >> s, 255)` with s the output channel's shift; layer
5's pixel is lit when acc > 0. The one-hot label adds its weight << label_shift (a column pick).

Two forms of the same network live here: `run` computes whole maps with the scatter definition
of a transposed convolution (the textbook form, vectorized over a batch), and `run_banded`
mirrors the C engine: one SSD1306 page (8 face rows) at a time, each layer computing only the
rows that band needs, in gather form. A test proves they agree, so the banding is not trusted
on faith.

Must never import torch, textual or `installation.*` beyond the ground module `installation.errors`
and `installation.files`: this module is on the runtime path.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from installation.errors import FormatError

NZ = 8  # latent values, int8 at scale 1/32 (a standard normal value v is round(32 v))
PIPS = 6
LATENT_SCALE = 32
FACE = 32
PAGE_ROWS = 8
PAGE_BYTES = FACE * FACE // PAGE_ROWS  # 128: 32 columns x 4 pages
ACT_MAX = 255
MAX_SHIFT = 24  # the engine refuses larger shifts (die_engine.c, DIE_E_SHIFT)
WEIGHT_MAX = 7  # 4-bit sign-magnitude: -7..7
KERNEL = 4
# (channels, height = width) of each layer's output; layer 1 is the FC.
# Layers 1-2 are 16 channels wide: at 8 the trained decoder could not draw 3-6 rotated pips.
SHAPES: tuple[tuple[int, int], ...] = ((16, 2), (16, 4), (8, 8), (4, 16), (1, 32))
FC_IN = NZ + PIPS
LAYERS = len(SHAPES)
# Rows of each lower layer one band needs at most (die_engine.h, DIE_WIN1..4).
WINDOW_ROWS = (2, 3, 4, 6)
FORMAT = "qcat-die-weights"
FORMAT_VERSION = 1
HEADER_COMMAND = "python -m models.die_reference header"
REBUILD_HINT = "re-export the die weights (or make seeded ones with `random_model`)"


def weight_shapes() -> list[tuple[int, ...]]:
    """Unpacked weight shapes: FC (out, FC_IN) with the label columns last; transposed
    convolutions (out, in, ky, kx), as die_engine.c reads them."""
    fc_out = SHAPES[0][0] * SHAPES[0][1] ** 2
    out: list[tuple[int, ...]] = [(fc_out, FC_IN)]
    for (c_in, _), (c_out, _) in zip(SHAPES[:-1], SHAPES[1:], strict=True):
        out.append((c_out, c_in, KERNEL, KERNEL))
    return out


@dataclass
class DieModel:
    """Weights (int8 values -7..7, unpacked), int32 biases and uint8 right shifts per output
    channel of each layer, the one-hot's shift, and where the weights came from."""

    weights: list[np.ndarray]
    bias: list[np.ndarray]
    shift: list[np.ndarray]
    label_shift: int
    provenance: dict[str, str] = field(default_factory=dict)

    def check(self, where: str = "die model") -> None:
        """FormatError naming the field when a shape, range or count is not the engine's."""
        if not (len(self.weights) == len(self.bias) == len(self.shift) == LAYERS):
            raise FormatError(f"{where}: expected {LAYERS} layers", hint=REBUILD_HINT)
        for i, (w, b, s, shape, (c, _)) in enumerate(zip(self.weights, self.bias, self.shift,
                                                         weight_shapes(), SHAPES, strict=True)):
            name = f"{where}: layer {i + 1}"
            if w.shape != shape or np.abs(w.astype(np.int64)).max(initial=0) > WEIGHT_MAX:
                raise FormatError(f"{name}: weights must be {shape} values in -7..7, got "
                                  f"{w.shape}", hint=REBUILD_HINT)
            if b.shape != (c,) or s.shape != (c,):
                raise FormatError(f"{name}: expected {c} biases and shifts, got {b.shape[0]} and "
                                  f"{s.shape[0]}", hint=REBUILD_HINT)
            if np.abs(b.astype(np.int64)).max(initial=0) >= 2**24:
                raise FormatError(f"{name}: a bias is beyond +-2^24", hint=REBUILD_HINT)
            if int(s.max(initial=0)) > MAX_SHIFT:
                raise FormatError(f"{name}: a shift is over {MAX_SHIFT}", hint=REBUILD_HINT)
        if not 0 <= self.label_shift <= 12:
            raise FormatError(f"{where}: label shift {self.label_shift} is outside 0..12",
                              hint=REBUILD_HINT)

    def engine_arrays(self) -> tuple[list[bytes], list[np.ndarray], list[np.ndarray], int]:
        """What `firmware.die_engine.DieEngine` takes: packed weights, biases, shifts, label
        shift (firmware may not import models, so the model unpacks itself)."""
        self.check()
        return ([pack_nibbles(w) for w in self.weights], [b.astype(np.int32) for b in self.bias],
                [s.astype(np.uint8) for s in self.shift], self.label_shift)

    def n_weights(self) -> int:
        return sum(int(w.size) for w in self.weights)


# --------------------------------------------------------------------------------------------
# Packing: two 4-bit sign-magnitude nibbles per byte, low nibble first


def pack_nibbles(values: np.ndarray) -> bytes:
    """Values -7..7 in C order -> bytes (bit 3 = sign, bits 0-2 = magnitude; zero is 0x0)."""
    v = np.asarray(values, dtype=np.int64).ravel()
    nib = (np.abs(v) | np.where(v < 0, 8, 0)).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_nibbles(packed: bytes, count: int) -> np.ndarray:
    b = np.frombuffer(packed, dtype=np.uint8)
    nib = np.stack([b & 15, b >> 4], axis=1).ravel()[:count].astype(np.int8)
    mag = nib & 7
    return np.where(nib & 8, -mag, mag).astype(np.int8)


def content_sha256(model: DieModel) -> str:
    """SHA-256 of what the engine computes with (packed weights, biases, shifts, label shift),
    independent of the file it came in: the header names it."""
    h = hashlib.sha256()
    for w, b, s in zip(model.weights, model.bias, model.shift, strict=True):
        h.update(pack_nibbles(w))
        h.update(b.astype("<i4").tobytes())
        h.update(s.astype(np.uint8).tobytes())
    h.update(bytes([model.label_shift]))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The latent


def gauss_table() -> np.ndarray:
    """256 int8: entropy byte u -> round(32 * Phi^-1((u + 0.5) / 256)), clamped to int8; how a
    roll turns NZ uniform bytes into a standard-normal latent without floats on the unit."""
    nd = statistics.NormalDist()
    vals = [round(LATENT_SCALE * nd.inv_cdf((u + 0.5) / 256)) for u in range(256)]
    return np.clip(np.array(vals), -128, 127).astype(np.int8)


def latent_from_bytes(data: bytes) -> np.ndarray:
    """NZ entropy bytes -> int8 latent (NZ,)."""
    if len(data) != NZ:
        raise ValueError(f"a die latent takes {NZ} bytes, got {len(data)}")
    return gauss_table()[np.frombuffer(data, dtype=np.uint8)]


# The roll (docs/protocol.md, "The die unit": firmware/die/die_unit.c's die_roll_recipe)
REJECT = 252  # a pips byte at or above this is spent and skipped: 252 = 42 x 6, so no bias
ROLL_BYTES = 1 + NZ  # a roll's bytes besides rejected ones: the pips byte, then the latent's


@dataclass(frozen=True)
class Roll:
    """What a die makes of the entropy bytes at the front of its reserve: `used` bytes spent
    (rejected pips bytes, the pips byte, NZ latent bytes), the pips 1..6 and the int8 latent."""

    pips: int
    z: np.ndarray  # (NZ,) int8
    used: int
    rejected: int


def roll_from_bytes(data: bytes) -> Roll | None:
    """The roll a die unit makes from `data` (its reserve from the roll's first byte on), or
    None when those bytes cannot pay for a whole roll (the unit then spends nothing). The
    controller re-derives a ROLL's pips and face with this and `run`/`run_banded` from the bytes
    it drew at [entropy_offset, entropy_offset + entropy_used): they must agree exactly."""
    i = 0
    while i < len(data) and data[i] >= REJECT:
        i += 1
    if len(data) - i < ROLL_BYTES:
        return None
    return Roll(pips=1 + data[i] % PIPS, z=latent_from_bytes(bytes(data[i + 1:i + ROLL_BYTES])),
                used=i + ROLL_BYTES, rejected=i)


def roll_face(model: DieModel, roll: Roll) -> bytes:
    """The 128 SSD1306 page bytes a die shows for `roll` (whole maps: six times faster than the
    banded form in numpy, and equal to it, which tests/test_die_engine.py proves)."""
    return bytes(pages(run(model, roll.z, roll.pips)[-1][0, 0]))


# --------------------------------------------------------------------------------------------
# Whole maps (scatter form), over a batch


def _requantize(acc: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc (B, C, ...) int64 -> uint8: ReLU, rounding right shift per channel, clamp to 255."""
    s = shift.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    q = np.minimum((acc + ((np.int64(1) << s) >> 1)) >> s, ACT_MAX)
    return np.where(acc <= 0, 0, q).astype(np.uint8)


def _fc_acc(model: DieModel, z: np.ndarray, pips: np.ndarray) -> np.ndarray:
    """z (B, NZ) int8, pips (B,) 1..6 -> acc (B, 8, 2, 2) int64."""
    w = model.weights[0].astype(np.int64)
    c, h = SHAPES[0]
    acc = z.astype(np.int64) @ w[:, :NZ].T  # (B, 32)
    acc += w[:, NZ + pips.astype(np.int64) - 1].T << model.label_shift  # the column pick
    acc = acc.reshape(-1, c, h, h)
    return acc + model.bias[0].astype(np.int64)[None, :, None, None]


def _tc_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The textbook transposed convolution (k4, s2, p1): every input pixel scatters its 4x4
    kernel into the output. x (B, Cin, H, H) -> acc (B, Cout, 2H, 2H) int64."""
    b, _, h, _ = x.shape
    w64 = w.astype(np.float64)
    xf = x.astype(np.float64)  # sums of small integers: exact in float64, and BLAS-fast
    pad = np.zeros((b, w.shape[0], 2 * h + 2, 2 * h + 2), dtype=np.float64)
    for ky in range(KERNEL):
        for kx in range(KERNEL):
            pad[:, :, ky:ky + 2 * h:2, kx:kx + 2 * h:2] += np.einsum(
                "bihw,oi->bohw", xf, w64[:, :, ky, kx], optimize=True)
    acc = pad[:, :, 1:-1, 1:-1].astype(np.int64)
    return acc + bias.astype(np.int64)[None, :, None, None]


def _check_inputs(z: np.ndarray, pips: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != NZ or z.dtype != np.int8:
        raise ValueError(f"z must be int8 (B, {NZ}), got {z.dtype} {z.shape}")
    p = np.broadcast_to(np.asarray(pips, dtype=np.int64), (z.shape[0],))
    if p.min() < 1 or p.max() > PIPS:
        raise ValueError(f"pips must be 1..{PIPS}")
    return z, p


def run(model: DieModel, z: np.ndarray, pips: np.ndarray | int) -> list[np.ndarray]:
    """Every layer over a batch: z (B, NZ) int8 -> [(B, C, H, H) uint8 for layers 1-4,
    (B, 1, 32, 32) uint8 0/1 face]."""
    z, p = _check_inputs(z, pips)
    x = _requantize(_fc_acc(model, z, p), model.shift[0])
    out = [x]
    for li in range(1, LAYERS):
        acc = _tc_acc(x, model.weights[li], model.bias[li])
        x = (acc > 0).astype(np.uint8) if li == LAYERS - 1 else _requantize(acc, model.shift[li])
        out.append(x)
    return out


# --------------------------------------------------------------------------------------------
# Bands (gather form), as die_engine.c computes them


def needs(h_in: int, first: int, last: int) -> tuple[int, int]:
    """Rows first..last of a layer need rows lo..hi (inclusive) of the layer below (h_in rows):
    output row oy takes input rows (oy - 1) // 2 and (oy + 1) // 2, clipped to the map."""
    return max((first - 1) // 2, 0), min((last + 1) // 2, h_in - 1)


def _tc_rows(win: np.ndarray, row0: int, h_in: int, w: np.ndarray, bias: np.ndarray,
             rows: range) -> np.ndarray:
    """Gather form: win (B, R, Cin, W_in) holds input rows row0..; -> acc (B, len(rows), Cout,
    2 W_in) of the output rows asked for."""
    b = win.shape[0]
    c_out, w_out = w.shape[0], 2 * h_in
    out = np.zeros((b, len(rows), c_out, w_out), dtype=np.int64)
    ox = np.arange(w_out)
    w64 = w.astype(np.int64)
    for r, oy in enumerate(rows):
        acc = np.broadcast_to(bias.astype(np.int64)[None, :, None], (b, c_out, w_out)).copy()
        for ky in range(KERNEL):
            t = oy + 1 - ky
            if t < 0 or t % 2 or t // 2 >= h_in:
                continue
            row = win[:, t // 2 - row0].astype(np.int64)  # (B, Cin, W_in)
            for kx in range(KERNEL):
                t2 = ox + 1 - kx
                ok = (t2 >= 0) & (t2 % 2 == 0) & (t2 // 2 < h_in)
                acc[:, :, ok] += np.einsum("bix,oi->box", row[:, :, t2[ok] // 2], w64[:, :, ky, kx])
        out[:, r] = acc
    return out


@dataclass
class Window:
    """Rows row0.. of one layer as one band holds them: data (B, rows, C, W), the C's layout."""

    layer: int
    row0: int
    data: np.ndarray


def run_banded(model: DieModel, z: np.ndarray, pips: np.ndarray | int,
               windows: list[list[Window]] | None = None) -> np.ndarray:
    """The face as the engine makes it, one page at a time: z (B, NZ) -> pages (B, 128) uint8.
    Each band's windows (layers 1-4) are appended to `windows` when given, one list per band."""
    z, p = _check_inputs(z, pips)
    fc = _requantize(_fc_acc(model, z, p), model.shift[0])  # (B, C, 2, 2)
    face = np.zeros((z.shape[0], FACE, FACE), dtype=np.uint8)
    for band in range(FACE // PAGE_ROWS):
        first = band * PAGE_ROWS
        spans: list[tuple[int, int]] = [(first, first + PAGE_ROWS - 1)]  # face rows
        for li in range(LAYERS - 1, 0, -1):  # rows of layer li (index li-1) the one above needs
            spans.append(needs(SHAPES[li - 1][1], *spans[-1]))
        spans.reverse()  # spans[i]: rows of layer i+1; spans[-1] the face
        spans[0] = (0, SHAPES[0][1] - 1)  # the FC makes its whole map every band
        wins = [Window(1, 0, fc.transpose(0, 2, 1, 3).copy())]
        for li in range(1, LAYERS):
            lo, hi = spans[li]
            below = wins[-1]
            acc = _tc_rows(below.data, below.row0, SHAPES[li - 1][1], model.weights[li],
                           model.bias[li], range(lo, hi + 1))
            if li == LAYERS - 1:
                face[:, lo:hi + 1] = (acc[:, :, 0] > 0)
            else:
                if hi - lo + 1 > WINDOW_ROWS[li]:
                    raise AssertionError(f"layer {li + 1} needs {hi - lo + 1} rows in a band")
                q = _requantize(acc.transpose(0, 2, 1, 3), model.shift[li]).transpose(0, 2, 1, 3)
                wins.append(Window(li + 1, lo, q))
        if windows is not None:
            windows.append(wins)
    return pages(face)


def pages(face_bits: np.ndarray) -> np.ndarray:
    """Face bits (32, 32) or (B, 32, 32) [or with a channel axis of 1], 1 = lit -> SSD1306
    pages: (128,) or (B, 128) uint8, byte p * 32 + x holding rows 8p..8p+7 of column x, LSB on
    top."""
    f = np.asarray(face_bits).astype(np.uint8)
    by = f.reshape(-1, FACE // PAGE_ROWS, PAGE_ROWS, FACE)  # (B, page, row, x)
    weights = (1 << np.arange(PAGE_ROWS, dtype=np.uint16))[None, None, :, None]
    out = (by.astype(np.uint16) * weights).sum(axis=2).astype(np.uint8).reshape(-1, PAGE_BYTES)
    return out[0] if f.ndim == 2 else out


def face_from_pages(page_bytes: np.ndarray | bytes) -> np.ndarray:
    """The inverse of `pages` for one face: 128 bytes -> (32, 32) uint8 0/1."""
    b = np.frombuffer(bytes(page_bytes), dtype=np.uint8).reshape(FACE // PAGE_ROWS, FACE)
    bits = (b[:, None, :] >> np.arange(PAGE_ROWS, dtype=np.uint8)[None, :, None]) & 1
    return bits.reshape(FACE, FACE)


# --------------------------------------------------------------------------------------------
# Seeded random weights (tests, until a trained decoder exists)

CALIBRATION_LATENTS = 64
TARGET_ACT = 160  # random layers are scaled so a high percentile of positive outputs lands here


def random_model(seed: int) -> DieModel:
    """Random 4-bit weights with biases and shifts calibrated on seeded latents so every layer
    is busy: a fair share of zeros, of mid values and of saturated 255s, faces neither blank nor
    full. Not a decoder of dice: a model with the real shapes and bit widths."""
    rng = np.random.default_rng(seed)
    weights = [rng.integers(-WEIGHT_MAX, WEIGHT_MAX + 1, size=s).astype(np.int8)
               for s in weight_shapes()]
    model = DieModel(weights=weights,
                     bias=[np.zeros(c, dtype=np.int32) for c, _ in SHAPES],
                     shift=[np.zeros(c, dtype=np.uint8) for c, _ in SHAPES],
                     label_shift=5, provenance={"source": "random", "seed": str(seed)})
    n = CALIBRATION_LATENTS
    z = gauss_table()[rng.integers(0, 256, size=(n * PIPS, NZ))]
    p = np.repeat(np.arange(1, PIPS + 1), n)
    x: np.ndarray | None = None
    for li, (c, _) in enumerate(SHAPES):
        if li == 0:
            acc = _fc_acc(model, z, p)
        else:
            assert x is not None
            acc = _tc_acc(x, model.weights[li], model.bias[li])
        per_c = acc.transpose(1, 0, 2, 3).reshape(c, -1).astype(np.float64)
        spread = per_c.std(axis=1) + 1
        bias = (rng.uniform(-0.3, 0.3, size=c) * spread).astype(np.int64)
        if li == LAYERS - 1:
            bias = bias - np.median(per_c, axis=1).astype(np.int64)  # about half the face lit
        model.bias[li] = bias.astype(np.int32)
        acc = acc + bias[None, :, None, None]
        if li == LAYERS - 1:
            break
        high = np.percentile(np.maximum(acc, 0).transpose(1, 0, 2, 3).reshape(c, -1), 95, axis=1)
        shift = np.ceil(np.log2(np.maximum(high, 1) / TARGET_ACT)).clip(0, MAX_SHIFT)
        model.shift[li] = shift.astype(np.uint8)
        x = _requantize(acc, model.shift[li])
    model.check()
    return model


# --------------------------------------------------------------------------------------------
# The container (.npz, docs/formats.md "Die weights") and the C header


def save(model: DieModel, path: Path) -> None:
    """Write the .npz container atomically."""
    import io

    from installation.files import write_atomic

    model.check()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(FORMAT_VERSION, dtype=np.int32),
        "label_shift": np.array(model.label_shift, dtype=np.int32),
        "provenance": np.array(json.dumps(model.provenance, sort_keys=True))}
    for i in range(LAYERS):
        arrays[f"w{i + 1}"] = model.weights[i].astype(np.int8)
        arrays[f"b{i + 1}"] = model.bias[i].astype(np.int32)
        arrays[f"s{i + 1}"] = model.shift[i].astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    write_atomic(path, buf.getvalue())


def load(path: Path) -> DieModel:
    """Read and check a .npz container; FormatError (one sentence, a hint) when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as doc:
            fields = {k: doc[k] for k in doc.files}
    except (OSError, ValueError, EOFError) as exc:
        raise FormatError(f"{path}: not a die weights file ({exc})", hint=REBUILD_HINT) from None
    if str(fields.get("format", "")) != FORMAT:
        raise FormatError(f"{path}: not a die weights file (format {FORMAT!r} missing)",
                          hint=REBUILD_HINT)
    version = int(fields.get("version", -1))
    if version != FORMAT_VERSION:
        raise FormatError(f"{path}: die weights version {version}, this qcat reads "
                          f"{FORMAT_VERSION}", hint=REBUILD_HINT)
    try:
        model = DieModel(
            weights=[fields[f"w{i + 1}"].astype(np.int8) for i in range(LAYERS)],
            bias=[fields[f"b{i + 1}"].astype(np.int32) for i in range(LAYERS)],
            shift=[fields[f"s{i + 1}"].astype(np.uint8) for i in range(LAYERS)],
            label_shift=int(fields["label_shift"]),
            provenance=json.loads(str(fields["provenance"])))
    except KeyError as exc:
        raise FormatError(f"{path}: die weights lack the field {exc}", hint=REBUILD_HINT) from None
    model.check(str(path))
    return model


def _c_bytes(data: bytes, indent: str = "    ") -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ",\n".join(indent + r for r in rows)


def c_header(model: DieModel) -> str:
    """firmware/die/die_weights.h: the model as const arrays and one `die_model`, with where
    it came from. Deterministic (no clock), so regenerating an unchanged model changes nothing."""
    model.check()
    prov = "".join(f" *   {k}: {v}\n" for k, v in sorted(model.provenance.items()))
    digest = content_sha256(model)
    out = [f"/* die_weights.h: the die decoder's weights ({model.n_weights():,} 4-bit weights).\n"
           f" * Generated by `{HEADER_COMMAND}` (models/die_reference.py, format "
           f"{FORMAT} {FORMAT_VERSION}); do not edit.\n"
           f" * Provenance:\n{prov}"
           f" *   content sha256: {digest}\n */\n"
           "#ifndef QCAT_DIE_WEIGHTS_H\n#define QCAT_DIE_WEIGHTS_H\n\n"
           '#include "die_engine.h"\n\n'
           f'#define DIE_WEIGHTS_SHA256 "{digest}"\n'
           "/* The same digest as bytes: the die unit's HELLO.weights_sha256. */\n"
           f"static const uint8_t die_weights_sha256[32] = {{\n{_c_bytes(bytes.fromhex(digest))}\n}};\n\n"]
    for i in range(LAYERS):
        packed = pack_nibbles(model.weights[i])
        out.append(f"static const uint8_t die_w{i + 1}[{len(packed)}] = {{\n{_c_bytes(packed)}\n}};\n")
        biases = ", ".join(str(int(v)) for v in model.bias[i])
        out.append(f"static const int32_t die_b{i + 1}[{len(model.bias[i])}] = {{{biases}}};\n")
        shifts = ", ".join(str(int(v)) for v in model.shift[i])
        out.append(f"static const uint8_t die_s{i + 1}[{len(model.shift[i])}] = {{{shifts}}};\n\n")
    names = range(1, LAYERS + 1)
    out.append("static const die_model_t die_model = {\n"
               f"    {{{', '.join(f'die_w{i}' for i in names)}}},\n"
               f"    {{{', '.join(f'die_b{i}' for i in names)}}},\n"
               f"    {{{', '.join(f'die_s{i}' for i in names)}}},\n"
               f"    {model.label_shift}u\n}};\n\n#endif\n")
    return "".join(out)


def c_gauss_header() -> str:
    """firmware/die/die_gauss.h: `gauss_table()` as the die unit's flash table (entropy byte ->
    latent value). Fixed by the roll's recipe, not by the model: regenerated with the weights
    header, it never changes with them."""
    table = gauss_table()
    rows = [", ".join(f"{int(v):4d}" for v in table[i:i + 16]) for i in range(0, len(table), 16)]
    body = ",\n".join("    " + r for r in rows)
    return ("/* die_gauss.h: entropy byte u -> latent value round(32 * Phi^-1((u + 0.5) / 256)),\n"
            " * clamped to int8 (models.die_reference.gauss_table: the controller re-derives a\n"
            " * roll's latent with the same table).\n"
            f" * Generated by `{HEADER_COMMAND}` (models/die_reference.py); do not edit.\n */\n"
            "#ifndef QCAT_DIE_GAUSS_H\n#define QCAT_DIE_GAUSS_H\n\n#include <stdint.h>\n\n"
            f"static const int8_t die_gauss[256] = {{\n{body}\n}};\n\n#endif\n")


HEADER_PATH = Path(__file__).resolve().parent.parent / "firmware" / "die" / "die_weights.h"
GAUSS_HEADER_PATH = HEADER_PATH.with_name("die_gauss.h")
# The trained decoder the unit ships with (`qcat models train die`): the header is made from it,
# and the controller verifies every roll's face against the reference running it.
SHIPPED_DECODER = Path(__file__).resolve().parent / "shipped" / "die-decoder.npz"
DEFAULT_SEED = 0  # the seeded random model tests use (and the header's, were nothing shipped)


def load_shipped() -> DieModel:
    """The shipped trained decoder (`SHIPPED_DECODER`), checked."""
    return load(SHIPPED_DECODER)


def write_header(model: DieModel, path: Path = HEADER_PATH,
                 gauss_path: Path | None = GAUSS_HEADER_PATH) -> None:
    """die_weights.h for `model`, and die_gauss.h beside it (unless `gauss_path` is None)."""
    from installation.files import write_atomic

    write_atomic(path, c_header(model).encode())
    if gauss_path is not None:
        write_atomic(gauss_path, c_gauss_header().encode())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m models.die_reference header [WEIGHTS.npz]`: regenerate die_weights.h from a
    container, by default the shipped trained decoder (the seeded random model only when no
    decoder is shipped)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "header" or len(args) > 2:
        print(f"usage: {HEADER_COMMAND} [WEIGHTS.npz]", file=sys.stderr)
        return 2
    if len(args) == 2:
        model = load(Path(args[1]))
    else:
        model = load(SHIPPED_DECODER) if SHIPPED_DECODER.exists() else random_model(DEFAULT_SEED)
    write_header(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
