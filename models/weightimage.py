"""The cat weight image (`.qcw`, docs/formats.md "Cat weight image"): write, read, verify.

The SD card of the cat unit holds the int8 DCGAN generator in this format: a CRC-protected header
(layer table, zero points, Tanh table, provenance), one 512-byte-aligned slice per output channel
(its weights in gather order `[ky][kx][ci]`, bias, multiplier, shift, its own layer/channel index
and a CRC-32), and a trailer with the SHA-256 of everything before it. `encode` and `decode` are
exact inverses; `decode` checks every byte and names the *first* bad part ("layer 3, channel 17:
CRC mismatch") with the command that rebuilds the file. `verify` never raises on garbage.

`synthetic()` makes a random but well-behaved int8 model (activations spread over the int8 range)
for tests and benchmarks of engines on machines without torch.

This module is on the runtime path: numpy and the standard library only. It must never import
torch, textual or `installation.*` other than the leaf `installation.errors`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import FormatError, InputError
from installation.files import write_atomic
from installation.reading import read_input

# The demo model shipped inside the package (trained on the procedural cats, see models/train.py).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_DEMO = SHIPPED_DIR / "cat-demo.qcw"
SHIPPED_DEMO_STATE = SHIPPED_DIR / "cat-demo.pt"

MAGIC = b"QCWEIGHT"
TRAILER_MAGIC = b"QCWTRAIL"
VERSION = 1
SECTOR = 512
HEADER_FIXED_BYTES = 128  # the fixed part; the layer table starts here
LAYER_ENTRY_BYTES = 64
TANH_TABLE_BYTES = 256
TRAILER_BYTES = SECTOR
SLICE_TAIL_BYTES = 16  # bias, multiplier, shift, layer index, channel index
SLICE_CRC_BYTES = 4
MAX_HEADER_BYTES = 65024  # the largest multiple of 512 a u16 holds
MAX_LAYERS = 16
# A reader refuses bigger files before reading them whole (the full model is about 13 MiB).
MAX_FILE_BYTES = 256 * 1024 * 1024

KERNEL = 4
ACT_RELU = 1
ACT_TANH = 2
ACTIVATIONS = {ACT_RELU: "relu", ACT_TANH: "tanh"}

NZ = 100
IMAGE_SIZE = 64
IMAGE_CHANNELS = 3
# Generator widths by model size name (DESIGN §5): `full` is the installation's 12,654,592-weight
# model, `demo` trains on a laptop CPU and ships with qcat.
SIZES: dict[str, int] = {"demo": 32, "full": 128}
SIZE_NAMES = ("demo", "full", "custom")

# Every value an engine accumulates must fit an int32: |bias| plus the largest possible sum of
# k*k*c_in products of a weight (|w| <= 127) and an input minus its zero point (|x - zp| <= 255).
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
WEIGHT_MAX = 127
INPUT_SPAN = 255
Q31_MIN = 2**30  # a nonzero Q31 multiplier lies in [2^30, 2^31)
SHIFT_MIN = -31
SHIFT_MAX = 0  # no left shifts: they could overflow a 32-bit engine's accumulator

REBUILD_HINT = "re-run `qcat sd weights build`"

_HEADER = struct.Struct("<8sHHIQ16sHHHHHbBfIIIII52s")
_LAYER = struct.Struct("<HHHHBBBBbb2sffIQ28s")
_TAIL = struct.Struct("<iiiHH")
_TRAILER_HEAD = struct.Struct("<8sQ32s")
assert _HEADER.size == HEADER_FIXED_BYTES and _LAYER.size == LAYER_ENTRY_BYTES
assert _TAIL.size == SLICE_TAIL_BYTES


def _round_up(n: int, to: int = SECTOR) -> int:
    return -(-n // to) * to


def slice_bytes_for(c_in: int, kernel: int = KERNEL) -> int:
    """Bytes of one slice: weights, the 16-byte tail, the CRC, padded to whole sectors."""
    return _round_up(kernel * kernel * c_in + SLICE_TAIL_BYTES + SLICE_CRC_BYTES)


def acc_bias_limit(c_in: int, kernel: int = KERNEL) -> int:
    """The largest |bias| that keeps every accumulator of a layer inside int32."""
    return INT32_MAX - kernel * kernel * c_in * WEIGHT_MAX * INPUT_SPAN


@dataclass
class Layer:
    """One ConvTranspose2d layer with its int8 constants.

    weights: int8 (c_out, k, k, c_in) = w[c][ky][kx][ci] (PyTorch kernel indices, not flipped);
    bias, multiplier, shift: int32 (c_out,).
    """

    c_in: int
    c_out: int
    h_in: int
    h_out: int
    kernel: int
    stride: int
    padding: int
    activation: int  # ACT_RELU or ACT_TANH
    in_zp: int
    out_zp: int  # for Tanh: the zero point of the pre-Tanh value
    in_scale: float
    out_scale: float
    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray

    @property
    def slice_bytes(self) -> int:
        return slice_bytes_for(self.c_in, self.kernel)

    @property
    def n_weights(self) -> int:
        return self.c_out * self.kernel * self.kernel * self.c_in


@dataclass
class WeightImage:
    """An int8 DCGAN generator as the weight image holds it (see docs/formats.md)."""

    model_size: str
    nz: int
    ngf: int
    latent_scale: float
    latent_zp: int
    layers: list[Layer]
    tanh_table: np.ndarray  # int8[256]: out = tanh_table[q + 128]
    provenance: dict[str, Any] = field(default_factory=dict)
    image_size: int = IMAGE_SIZE
    channels: int = IMAGE_CHANNELS

    @property
    def conv_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    @property
    def header_bytes(self) -> int:
        return _round_up(self._provenance_offset + len(self._provenance_bytes()))

    @property
    def file_bytes(self) -> int:
        return (self.header_bytes + sum(lay.c_out * lay.slice_bytes for lay in self.layers)
                + TRAILER_BYTES)

    @property
    def _tanh_offset(self) -> int:
        return HEADER_FIXED_BYTES + LAYER_ENTRY_BYTES * len(self.layers)

    @property
    def _provenance_offset(self) -> int:
        return self._tanh_offset + TANH_TABLE_BYTES

    def _provenance_bytes(self) -> bytes:
        return json.dumps(self.provenance, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Layout of the DCGAN generator (PyTorch example): 1x1 -> 4 -> 8 -> 16 -> 32 -> 64.


@dataclass(frozen=True)
class LayerShape:
    c_in: int
    c_out: int
    h_in: int
    h_out: int
    stride: int
    padding: int
    activation: int

    @property
    def slice_bytes(self) -> int:
        return slice_bytes_for(self.c_in)


def generator_layout(nz: int = NZ, ngf: int = SIZES["demo"],
                     channels: int = IMAGE_CHANNELS) -> list[LayerShape]:
    """The five ConvTranspose2d layers of the DCGAN generator for a latent length and width."""
    widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf, channels]
    shapes = []
    h = 1
    for i in range(5):
        stride, padding = (1, 0) if i == 0 else (2, 1)
        h_out = (h - 1) * stride - 2 * padding + KERNEL
        act = ACT_TANH if i == 4 else ACT_RELU
        shapes.append(LayerShape(widths[i], widths[i + 1], h, h_out, stride, padding, act))
        h = h_out
    return shapes


def conv_weight_count(nz: int = NZ, ngf: int = SIZES["full"]) -> int:
    return sum(s.c_in * s.c_out * KERNEL * KERNEL for s in generator_layout(nz, ngf))


# --------------------------------------------------------------------------------------------
# Writing


def _check_for_encode(img: WeightImage) -> None:
    """Refuse to write what a reader would refuse (a writer bug, not a user error)."""
    if img.model_size not in SIZE_NAMES:
        raise ValueError(f"model size {img.model_size!r} is not one of {SIZE_NAMES}")
    if not 1 <= len(img.layers) <= MAX_LAYERS:
        raise ValueError(f"{len(img.layers)} layers")
    if img.tanh_table.shape != (TANH_TABLE_BYTES,):
        raise ValueError("the Tanh table must have 256 entries")
    if img.header_bytes > MAX_HEADER_BYTES:
        raise ValueError("the provenance is too long for the header")
    for index, lay in enumerate(img.layers):
        k = lay.kernel
        if lay.weights.shape != (lay.c_out, k, k, lay.c_in):
            raise ValueError(f"layer {index + 1}: weights shape {lay.weights.shape}")
        for name in ("bias", "multiplier", "shift"):
            if np.shape(getattr(lay, name)) != (lay.c_out,):
                raise ValueError(f"layer {index + 1}: {name} must have shape ({lay.c_out},)")
        problem = _constant_problem(lay)
        if problem:
            raise ValueError(f"layer {index + 1}, channel {problem[0]}: {problem[1]}")


def _constant_problem(lay: Layer) -> tuple[int, str] | None:
    """The first channel whose constants an int32 engine could not run exactly, if any."""
    w = np.asarray(lay.weights)
    bad_w = np.abs(w.astype(np.int16)).reshape(lay.c_out, -1).max(axis=1) > WEIGHT_MAX
    mult = np.asarray(lay.multiplier, dtype=np.int64)
    shift = np.asarray(lay.shift, dtype=np.int64)
    bias = np.asarray(lay.bias, dtype=np.int64)
    bad_m = ~((mult == 0) | ((mult >= Q31_MIN) & (mult <= INT32_MAX)))
    bad_s = (shift < SHIFT_MIN) | (shift > SHIFT_MAX)
    bad_b = np.abs(bias) > acc_bias_limit(lay.c_in, lay.kernel)
    for mask, what in ((bad_w, "weight -128 (weights are symmetric, -127..127)"),
                       (bad_m, "multiplier outside [2^30, 2^31) and not 0"),
                       (bad_s, f"shift outside {SHIFT_MIN}..{SHIFT_MAX}"),
                       (bad_b, "bias too large for a 32-bit accumulator")):
        hit = np.flatnonzero(mask)
        if hit.size:
            return int(hit[0]), what
    return None


def encode(img: WeightImage) -> bytes:
    """The complete `.qcw` file for `img` (header, slices, trailer)."""
    _check_for_encode(img)
    header_bytes = img.header_bytes
    file_bytes = img.file_bytes
    n = len(img.layers)
    tanh_off = img._tanh_offset
    prov_off = img._provenance_offset
    prov = img._provenance_bytes()

    header = bytearray(header_bytes)
    last = img.layers[-1]
    header[:HEADER_FIXED_BYTES] = _HEADER.pack(
        MAGIC, VERSION, header_bytes, 0, file_bytes,
        img.model_size.encode("ascii").ljust(16, b"\0"), img.nz, img.ngf, n, last.h_out,
        last.c_out, img.latent_zp, 0, img.latent_scale, HEADER_FIXED_BYTES, tanh_off, prov_off,
        len(prov), header_bytes, bytes(52))
    offset = header_bytes
    for i, lay in enumerate(img.layers):
        entry = _LAYER.pack(lay.c_in, lay.c_out, lay.h_in, lay.h_out, lay.kernel, lay.stride,
                            lay.padding, lay.activation, lay.in_zp, lay.out_zp, bytes(2),
                            lay.in_scale, lay.out_scale, lay.slice_bytes, offset, bytes(28))
        start = HEADER_FIXED_BYTES + i * LAYER_ENTRY_BYTES
        header[start:start + LAYER_ENTRY_BYTES] = entry
        offset += lay.c_out * lay.slice_bytes
    header[tanh_off:tanh_off + TANH_TABLE_BYTES] = np.asarray(img.tanh_table, np.int8).tobytes()
    header[prov_off:prov_off + len(prov)] = prov
    struct.pack_into("<I", header, 12, zlib.crc32(bytes(header)))

    out = bytearray(header)
    for index, lay in enumerate(img.layers):
        out += _encode_slices(index, lay)
    digest = hashlib.sha256(out).digest()
    out += _TRAILER_HEAD.pack(TRAILER_MAGIC, file_bytes, digest).ljust(TRAILER_BYTES, b"\0")
    assert len(out) == file_bytes
    return bytes(out)


def _encode_slices(index: int, lay: Layer) -> bytes:
    sb = lay.slice_bytes
    nw = lay.kernel * lay.kernel * lay.c_in
    region = np.zeros((lay.c_out, sb), dtype=np.uint8)
    region[:, :nw] = np.ascontiguousarray(lay.weights, dtype=np.int8).reshape(
        lay.c_out, nw).view(np.uint8)
    tail = np.zeros(lay.c_out, dtype=[("bias", "<i4"), ("mult", "<i4"), ("shift", "<i4"),
                                      ("layer", "<u2"), ("channel", "<u2")])
    tail["bias"] = lay.bias
    tail["mult"] = lay.multiplier
    tail["shift"] = lay.shift
    tail["layer"] = index
    tail["channel"] = np.arange(lay.c_out)
    region[:, nw:nw + SLICE_TAIL_BYTES] = tail.view(np.uint8).reshape(lay.c_out, SLICE_TAIL_BYTES)
    crc_at = sb - SLICE_CRC_BYTES
    for c in range(lay.c_out):
        crc = zlib.crc32(region[c, :crc_at].tobytes())
        region[c, crc_at:] = np.frombuffer(struct.pack("<I", crc), dtype=np.uint8)
    return region.tobytes()


def save(img: WeightImage, path: Path) -> str:
    """Write `img` to `path` atomically (temp file + rename); returns the file's SHA-256."""
    return write_atomic(Path(path), encode(img))


# --------------------------------------------------------------------------------------------
# Reading


def _bad(message: str) -> FormatError:
    return FormatError(message, hint=REBUILD_HINT)


def decode(data: bytes) -> WeightImage:
    """Parse and check a whole `.qcw` file; raises FormatError naming the first problem."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise _bad("the weight image is empty (0 bytes)")
    if not (MAGIC.startswith(data[:8]) if n < len(MAGIC) else data[:8] == MAGIC):
        raise _bad("not a qcat weight image (the file does not start with QCWEIGHT)")
    if n < HEADER_FIXED_BYTES:
        raise _bad(f"the weight image is truncated: {n} bytes, not even a header")
    (_, version, header_bytes, header_crc, file_bytes, size_raw, nz, ngf, n_layers, image_size,
     channels, latent_zp, _res, latent_scale, table_off, tanh_off, prov_off, prov_len,
     first_slice, _res2) = _HEADER.unpack_from(data, 0)
    if version != VERSION:
        raise FormatError(f"the weight image has format version {version}; this qcat reads "
                          f"version {VERSION}", hint=REBUILD_HINT)
    if header_bytes < SECTOR or header_bytes % SECTOR:
        raise _bad(f"the weight image header size {header_bytes} is not a positive multiple "
                   f"of {SECTOR} (header damaged)")
    if n < header_bytes:
        raise _bad(f"the weight image is truncated: {n} bytes, shorter than its "
                   f"{header_bytes}-byte header")
    header = bytearray(data[:header_bytes])
    header[12:16] = bytes(4)
    if zlib.crc32(bytes(header)) != header_crc:
        raise _bad("the weight image header is damaged (header CRC mismatch)")
    if n < file_bytes:
        raise _bad(f"the weight image is truncated: {n} of {file_bytes} bytes")
    if n > file_bytes:
        raise _bad(f"the weight image has {n - file_bytes} unexpected bytes after its end")

    # The header is intact: what follows are writer bugs or files from a foreign writer.
    size_name = size_raw.rstrip(b"\0").decode("ascii", "replace")
    if size_name not in SIZE_NAMES:
        raise _bad(f"the weight image names an unknown model size {size_name!r}")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise _bad(f"the weight image claims {n_layers} layers (1..{MAX_LAYERS} allowed)")
    if table_off != HEADER_FIXED_BYTES or first_slice != header_bytes:
        raise _bad("the weight image header has inconsistent offsets")
    if (tanh_off < table_off + n_layers * LAYER_ENTRY_BYTES
            or tanh_off + TANH_TABLE_BYTES > header_bytes
            or prov_off < HEADER_FIXED_BYTES or prov_off + prov_len > header_bytes):
        raise _bad("the weight image header has a table outside the header")
    tanh_table = np.frombuffer(data, dtype=np.int8, count=TANH_TABLE_BYTES,
                               offset=tanh_off).copy()
    try:
        provenance = json.loads(data[prov_off:prov_off + prov_len].decode("utf-8")) \
            if prov_len else {}
    except (UnicodeDecodeError, ValueError):
        raise _bad("the weight image provenance is not a JSON object") from None
    if not isinstance(provenance, dict):
        raise _bad("the weight image provenance is not a JSON object")

    layers: list[Layer] = []
    offset = header_bytes
    prev_c, prev_h, prev_zp = nz, 1, latent_zp
    entries = [_LAYER.unpack_from(data, table_off + i * LAYER_ENTRY_BYTES) for i in range(n_layers)]
    for i, e in enumerate(entries):
        (c_in, c_out, h_in, h_out, kernel, stride, padding, act, in_zp, out_zp, _r, in_scale,
         out_scale, slice_bytes, layer_off, _r2) = e
        where = f"layer {i + 1}"  # people count layers from 1 (DESIGN §5)
        if c_in != prev_c or h_in != prev_h or c_out == 0:
            raise _bad(f"{where} does not follow the previous layer's shape")
        if kernel != KERNEL or stride not in (1, 2) or padding not in (0, 1):
            raise _bad(f"{where} has an unsupported kernel {kernel}, stride {stride} or "
                       f"padding {padding}")
        if h_out != (h_in - 1) * stride - 2 * padding + kernel:
            raise _bad(f"{where} has an output size {h_out} its shape does not give")
        want_act = ACT_TANH if i == n_layers - 1 else ACT_RELU
        if act != want_act:
            raise _bad(f"{where} has activation {act}; expected {ACTIVATIONS[want_act]}")
        if in_zp != prev_zp:
            raise _bad(f"{where} input zero point {in_zp} differs from the previous output's "
                       f"{prev_zp}")
        if slice_bytes != slice_bytes_for(c_in, kernel):
            raise _bad(f"{where} has slice size {slice_bytes}; its shape needs "
                       f"{slice_bytes_for(c_in, kernel)}")
        if layer_off != offset:
            raise _bad(f"{where} starts at byte {layer_off}, expected {offset}")
        layers.append(Layer(c_in, c_out, h_in, h_out, kernel, stride, padding, act, in_zp, out_zp,
                            float(in_scale), float(out_scale), np.empty(0), np.empty(0),
                            np.empty(0), np.empty(0)))
        offset += c_out * slice_bytes
        prev_c, prev_h, prev_zp = c_out, h_out, out_zp
    if layers[-1].c_out != channels or layers[-1].h_out != image_size:
        raise _bad("the weight image's last layer does not make its stated image size")
    if offset + TRAILER_BYTES != file_bytes:
        raise _bad(f"the weight image's layers end at byte {offset}, but its size says "
                   f"{file_bytes - TRAILER_BYTES}")

    for i, lay in enumerate(layers):
        _read_slices(data, i, lay, entries[i][14])
    _check_trailer(data, file_bytes)
    return WeightImage(size_name, nz, ngf, float(latent_scale), latent_zp, layers, tanh_table,
                       provenance, image_size, channels)


def _read_slices(data: bytes, index: int, lay: Layer, offset: int) -> None:
    """Fill `lay` from its slices, checking each slice's CRC and its own layer/channel index."""
    sb = lay.slice_bytes
    crc_at = sb - SLICE_CRC_BYTES
    view = memoryview(data)
    for c in range(lay.c_out):
        start = offset + c * sb
        stored = struct.unpack_from("<I", data, start + crc_at)[0]
        if zlib.crc32(view[start:start + crc_at]) != stored:
            raise _bad(f"layer {index + 1}, channel {c}: CRC mismatch")
    region = np.frombuffer(data, dtype=np.uint8, count=lay.c_out * sb,
                           offset=offset).reshape(lay.c_out, sb)
    nw = lay.kernel * lay.kernel * lay.c_in
    tail = np.ascontiguousarray(region[:, nw:nw + SLICE_TAIL_BYTES]).view(
        [("bias", "<i4"), ("mult", "<i4"), ("shift", "<i4"), ("layer", "<u2"),
         ("channel", "<u2")]).reshape(lay.c_out)
    wrong = np.flatnonzero((tail["layer"] != index) | (tail["channel"] != np.arange(lay.c_out)))
    if wrong.size:
        c = int(wrong[0])
        raise _bad(f"layer {index + 1}, channel {c}: the slice there belongs to layer "
                   f"{int(tail['layer'][c]) + 1}, channel {tail['channel'][c]}")
    lay.weights = np.ascontiguousarray(region[:, :nw]).view(np.int8).reshape(
        lay.c_out, lay.kernel, lay.kernel, lay.c_in)
    lay.bias = tail["bias"].astype(np.int32)
    lay.multiplier = tail["mult"].astype(np.int32)
    lay.shift = tail["shift"].astype(np.int32)
    problem = _constant_problem(lay)
    if problem:
        raise _bad(f"layer {index + 1}, channel {problem[0]}: {problem[1]}")


def _check_trailer(data: bytes, file_bytes: int) -> None:
    start = file_bytes - TRAILER_BYTES
    magic, size, digest = _TRAILER_HEAD.unpack_from(data, start)
    if magic != TRAILER_MAGIC:
        raise _bad("the weight image trailer is damaged (no QCWTRAIL)")
    if size != file_bytes:
        raise _bad(f"the weight image trailer gives size {size}, the header {file_bytes}")
    if any(data[start + _TRAILER_HEAD.size:file_bytes]):
        raise _bad("the weight image trailer is damaged (nonzero padding)")
    if hashlib.sha256(memoryview(data)[:start]).digest() != digest:
        raise _bad("the weight image SHA-256 does not match its trailer")


def _read(path: Path) -> bytes:
    return read_input(path, "weight image", max_bytes=MAX_FILE_BYTES,
                      hint="build one with `qcat sd weights build`")


def load(path: Path) -> WeightImage:
    """Read and fully check a `.qcw` file (FormatError / InputError on any problem)."""
    data = _read(path)
    try:
        return decode(data)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc.message}", hint=exc.hint) from None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a whole file, streamed: the model hash recorded with every exhibit, and the
    appliance's hash of checkpoints, PNGs and WAVs (numpy-free, so every layer may call it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class VerifyReport:
    """What `verify` found; `ok` is False with `error` (one sentence) and `hint` on a problem."""

    path: str
    ok: bool
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    hint: str | None = None
    image: WeightImage | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "bytes": self.bytes, "sha256": self.sha256,
                "error": self.error, "hint": self.hint}


def verify(path: Path) -> VerifyReport:
    """Check a file completely; never raises for anything a file can contain or lack."""
    report = VerifyReport(path=str(path), ok=False)
    try:
        data = _read(path)
        report.bytes = len(data)
        report.sha256 = hashlib.sha256(data).hexdigest()
        report.image = decode(data)
        report.ok = True
    except (FormatError, InputError) as exc:
        report.error, report.hint = exc.message, exc.hint
    return report


def describe(img: WeightImage, data_len: int | None = None,
             sha256: str | None = None) -> dict[str, Any]:
    """A JSON-ready description (what `qcat sd weights inspect --json` prints)."""
    raw = img.conv_weights
    file_bytes = img.file_bytes
    return {
        "model_size": img.model_size,
        "nz": img.nz,
        "ngf": img.ngf,
        "conv_weights": raw,
        "weight_mib": round(raw / 2**20, 2),
        "bytes": data_len if data_len is not None else file_bytes,
        "mib": round((data_len or file_bytes) / 2**20, 2),
        "padding_bytes": file_bytes - raw - img.header_bytes - TRAILER_BYTES,
        "header_bytes": img.header_bytes,
        "sha256": sha256,
        "latent": {"scale": img.latent_scale, "zero_point": img.latent_zp},
        "layers": [{
            "index": i, "c_in": lay.c_in, "c_out": lay.c_out, "h_in": lay.h_in,
            "h_out": lay.h_out, "kernel": lay.kernel, "stride": lay.stride,
            "padding": lay.padding, "activation": ACTIVATIONS[lay.activation],
            "in_zp": lay.in_zp, "out_zp": lay.out_zp, "in_scale": lay.in_scale,
            "out_scale": lay.out_scale, "weights": lay.n_weights,
            "slice_bytes": lay.slice_bytes, "bytes": lay.c_out * lay.slice_bytes,
        } for i, lay in enumerate(img.layers)],
        "provenance": img.provenance,
    }


# --------------------------------------------------------------------------------------------
# A random, well-behaved model for engines' tests and benchmarks (no torch needed).

SYNTH_CALIBRATION_LATENTS = 4
# Target: the largest |acc| seen in calibration maps to this fraction of the output's int8 span,
# so activations spread over the range without saturating much.
SYNTH_FILL = 0.85
SYNTH_LATENT_RANGE = 4.85  # |z| never exceeds sqrt(-2 ln(0.5/65536)) = 4.85 (DESIGN §4)


def synthetic(size: str = "demo", seed: int = 0) -> WeightImage:
    """A random int8 generator of a named size whose activations use the int8 range."""
    from models import reference  # the integer helpers; imported here to avoid a cycle

    if size not in SIZES:
        raise InputError(f"unknown model size {size!r}", hint=f"use one of {', '.join(SIZES)}")
    rng = np.random.default_rng(seed)
    nz, ngf = NZ, SIZES[size]
    latent_zp = int(rng.integers(-8, 9))
    latent_scale = float(np.float32(SYNTH_LATENT_RANGE / 120))
    img = WeightImage(size, nz, ngf, latent_scale, latent_zp, [], np.zeros(256, np.int8),
                      {"tool": "models.weightimage.synthetic", "seed": seed, "size": size})
    z = rng.standard_normal((SYNTH_CALIBRATION_LATENTS, nz))
    x = reference.quantize_latent(z, img)[:, :, None, None]  # (N, nz, 1, 1)
    in_zp, in_scale = latent_zp, latent_scale
    for shape in generator_layout(nz, ngf):
        w = rng.integers(-WEIGHT_MAX, WEIGHT_MAX + 1,
                         size=(shape.c_out, KERNEL, KERNEL, shape.c_in), dtype=np.int8)
        if shape.activation == ACT_RELU:
            out_zp = int(rng.integers(-128, -96))
        else:
            out_zp = int(rng.integers(-10, 11))
        lay = Layer(shape.c_in, shape.c_out, shape.h_in, shape.h_out, KERNEL, shape.stride,
                    shape.padding, shape.activation, in_zp, out_zp, in_scale, 0.0, w,
                    np.zeros(shape.c_out, np.int32), np.zeros(shape.c_out, np.int32),
                    np.zeros(shape.c_out, np.int32))
        if shape.activation == ACT_TANH:
            img.tanh_table = reference.make_tanh_table(3.0 / 127, out_zp)
        acc = reference.accumulate(lay, x)  # (N, c_out, H, W) int64, bias 0
        spread = acc.std(axis=(0, 2, 3)) + 1.0
        bias = rng.normal(0.0, 0.5, shape.c_out) * spread
        lay.bias = np.clip(np.round(bias), -acc_bias_limit(shape.c_in) // 2,
                           acc_bias_limit(shape.c_in) // 2).astype(np.int32)
        peak = np.abs(acc + lay.bias[None, :, None, None]).max(axis=(0, 2, 3)) + 1.0
        span = (127 - out_zp) if shape.activation == ACT_RELU else 127
        m, s = reference.quantize_multipliers(SYNTH_FILL * span / peak)
        lay.multiplier, lay.shift = m, s
        lay.out_scale = float(np.float32(in_scale / 64.0))  # informational only
        img.layers.append(lay)
        x = reference.requantize(lay, acc + lay.bias[None, :, None, None].astype(np.int64),
                                 img.tanh_table)
        in_zp, in_scale = out_zp, lay.out_scale
    return img
