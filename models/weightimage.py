"""The cat weight image (`.qcw`, docs/formats.md "Cat weight image"): write, read, verify.

The SD card of the cat unit holds the int8 DCGAN generator in this format: a CRC-protected header
(layer table, zero points, Tanh table, provenance), one slice per output channel (its weights in
gather order `[ky][kx][ci]`, bias, multiplier, shift, its own layer/channel index and a CRC-32),
and a trailer with the SHA-256 of everything before it. `encode` and `decode` are exact inverses;
`decode` checks every byte and names the *first* bad part ("layer 3, channel 17: CRC mismatch")
with the command that rebuilds the file. `verify` never raises on garbage.

Three versions, each read explicitly (any other is refused in one sentence):
- 1: every slice padded to whole 512-byte sectors, weights as raw int8 (the shipped demo, and
  every image an archived exhibit names);
- 2: slices back to back with a slice directory in the header, each layer `raw` or `huffman`
  (canonical, length-limited Huffman over the int8 values): lossless, the same weights as v1;
- 3: version 2 plus layers with 4-bit weights (−7..7, `packed4` or `huffman`): lossy, written only
  by `qcat models quantize --int4-layers` behind the quality gate.
The SD card is the cat unit's bottleneck, so every byte the padding or 8-bit storage wastes is
time; `read_units` says which sector ranges the C engine reads, for the time model.

`synthetic()` makes a random but well-behaved int8 model (activations spread over the int8 range)
for tests and benchmarks of engines on machines without torch.

This module is on the runtime path: numpy and the standard library only. It must never import
torch, textual or `installation.*` other than the leaf `installation.errors`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import FormatError, InputError, UsageError
from installation.files import sha256_of as sha256_of  # re-exported: the model hash
from installation.files import write_atomic
from installation.reading import read_input

# The demo model shipped inside the package (trained on the procedural cats, see models/train.py).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_DEMO = SHIPPED_DIR / "cat-demo.qcw"
SHIPPED_DEMO_STATE = SHIPPED_DIR / "cat-demo.pt"
# Weight images qcat shipped before the current one, named cat-demo-<first 8 hex of SHA-256>.qcw:
# exhibits archived with them still name them, and `gallery verify` re-renders with them (F2).
RETIRED_DIR = SHIPPED_DIR / "retired"

MAGIC = b"QCWEIGHT"
TRAILER_MAGIC = b"QCWTRAIL"
VERSION_PADDED = 1  # slices padded to sectors, raw int8
VERSION_PACKED = 2  # packed slices, raw or Huffman: lossless
VERSION_INT4 = 3  # packed, with 4-bit layers: lossy
VERSIONS = (VERSION_PADDED, VERSION_PACKED, VERSION_INT4)
# What `qcat sd weights build` writes unless told otherwise.
DEFAULT_VERSION = VERSION_PACKED
# Kept for callers that name "the" version (the card manifest): the oldest, still read.
VERSION = VERSION_PADDED
SECTOR = 512
HEADER_FIXED_BYTES = 128  # the fixed part; the layer table starts here
LAYER_ENTRY_BYTES = 64
TANH_TABLE_BYTES = 256
TRAILER_BYTES = SECTOR
SLICE_TAIL_BYTES = 16  # bias, multiplier, shift, layer index, channel index
SLICE_CRC_BYTES = 4
SLICE_FIXED_BYTES = SLICE_TAIL_BYTES + SLICE_CRC_BYTES  # what a packed slice holds besides weights
DIR_ENTRY_BYTES = 4  # a u32 file offset per slice, plus one for the end of the last
CODE_LENGTHS_BYTES = 256  # one u8 code length per int8 value (+128), per Huffman layer
# Longest Huffman code: the C decoder looks a code up in a 2^12-entry table (8 KB of the arena).
HUFF_MAX_BITS = 12
INT4_MAX = 7  # 4-bit weights are symmetric, -7..7 (-8 never occurs)
# Per-layer weight encodings (the layer table's byte 36) and the weight widths they may carry.
ENC_RAW, ENC_HUFFMAN, ENC_PACKED4 = 0, 1, 2
ENCODINGS = {"raw": ENC_RAW, "huffman": ENC_HUFFMAN, "packed4": ENC_PACKED4}
ENCODING_NAMES = {code: name for name, code in ENCODINGS.items()}
# CAT_READ_BYTES of cat_engine.h: a read unit is as many whole slices of one layer as fit.
READ_BYTES = 64 * 1024
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
    # How the slices store the weights (versions 2 and 3): "raw", "huffman" or "packed4"; and
    # the weights' width: 8, or 4 (values -7..7, version 3 only).
    encoding: str = "raw"
    weight_bits: int = 8
    # Bytes each channel's slice takes in the file, once written or read (None before): the time
    # model's input, filled by `encode`, `decode` and `with_format`.
    stored: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def slice_bytes(self) -> int:
        """Version 1: the padded slice. Packed: the mean stored bytes per channel, rounded up
        (what firmware.bench's time model divides read units by)."""
        if self.stored is None:
            return slice_bytes_for(self.c_in, self.kernel)
        return -(-int(np.sum(self.stored)) // self.c_out)

    @property
    def stored_bytes(self) -> int:
        """Bytes of all the layer's slices in the file (what the SD card must deliver)."""
        if self.stored is None:
            return self.c_out * slice_bytes_for(self.c_in, self.kernel)
        return int(np.sum(self.stored))

    @property
    def max_slice_bytes(self) -> int:
        if self.stored is None:
            return slice_bytes_for(self.c_in, self.kernel)
        return int(np.max(self.stored))

    @property
    def weights_per_slice(self) -> int:
        return self.kernel * self.kernel * self.c_in

    @property
    def n_weights(self) -> int:
        return self.c_out * self.kernel * self.kernel * self.c_in

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, everything in the slices counted (tail and CRC included)."""
        return 8.0 * self.stored_bytes / self.n_weights


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
    version: int = VERSION_PADDED

    @property
    def conv_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    @property
    def header_bytes(self) -> int:
        return _round_up(self._provenance_offset + len(self._provenance_bytes()))

    @property
    def slice_bytes_total(self) -> int:
        """Bytes of every slice in the file (v1: padding included)."""
        if self.version != VERSION_PADDED:
            _ensure_stored(self)
        return sum(lay.stored_bytes for lay in self.layers)

    @property
    def file_bytes(self) -> int:
        if self.version == VERSION_PADDED:
            return (self.header_bytes + sum(lay.c_out * slice_bytes_for(lay.c_in, lay.kernel)
                                            for lay in self.layers) + TRAILER_BYTES)
        return _round_up(self.header_bytes + self.slice_bytes_total) + TRAILER_BYTES

    @property
    def _tanh_offset(self) -> int:
        return HEADER_FIXED_BYTES + LAYER_ENTRY_BYTES * len(self.layers)

    @property
    def _code_lengths_offset(self) -> int:
        return self._tanh_offset + TANH_TABLE_BYTES

    @property
    def _directory_offset(self) -> int:
        n_huff = sum(lay.encoding == "huffman" for lay in self.layers)
        return self._code_lengths_offset + CODE_LENGTHS_BYTES * n_huff

    @property
    def n_slices(self) -> int:
        return sum(lay.c_out for lay in self.layers)

    @property
    def _provenance_offset(self) -> int:
        if self.version == VERSION_PADDED:
            return self._tanh_offset + TANH_TABLE_BYTES
        return self._directory_offset + DIR_ENTRY_BYTES * (self.n_slices + 1)

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
    if img.version not in VERSIONS:
        raise ValueError(f"format version {img.version} is not one of {VERSIONS}")
    if img.header_bytes > MAX_HEADER_BYTES:
        raise ValueError("the provenance is too long for the header")
    for index, lay in enumerate(img.layers):
        k = lay.kernel
        if lay.weights.shape != (lay.c_out, k, k, lay.c_in):
            raise ValueError(f"layer {index + 1}: weights shape {lay.weights.shape}")
        for name in ("bias", "multiplier", "shift"):
            if np.shape(getattr(lay, name)) != (lay.c_out,):
                raise ValueError(f"layer {index + 1}: {name} must have shape ({lay.c_out},)")
        problem = _encoding_problem(img.version, lay) or _constant_problem(lay)
        if problem:
            raise ValueError(f"layer {index + 1}, channel {problem[0]}: {problem[1]}")
    if img.version == VERSION_INT4 and all(lay.weight_bits == 8 for lay in img.layers):
        raise ValueError("format version 3 needs a 4-bit layer; an all-8-bit image is version 2")


def _encoding_problem(version: int, lay: Layer, weights: bool = True) -> tuple[int, str] | None:
    """What a reader of `version` would refuse about a layer's encoding and width (and, with
    `weights`, its weights' range), if anything."""
    if lay.encoding not in ENCODINGS or lay.weight_bits not in (4, 8):
        return 0, f"encoding {lay.encoding!r} with {lay.weight_bits}-bit weights"
    if version == VERSION_PADDED and (lay.encoding != "raw" or lay.weight_bits != 8):
        return 0, "format version 1 holds raw 8-bit weights only"
    if lay.weight_bits == 4 and version != VERSION_INT4:
        return 0, "4-bit weights need format version 3"
    if lay.encoding == "packed4" and lay.weight_bits != 4:
        return 0, "packed4 holds 4-bit weights only"
    if lay.encoding == "raw" and lay.weight_bits == 4:
        return 0, "4-bit weights are stored packed4 or huffman, never raw"
    if lay.weight_bits == 4 and weights:
        big = np.abs(np.asarray(lay.weights, np.int16)).reshape(lay.c_out, -1).max(axis=1)
        hit = np.flatnonzero(big > INT4_MAX)
        if hit.size:
            return int(hit[0]), f"a 4-bit layer's weight lies outside -{INT4_MAX}..{INT4_MAX}"
    return None


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
    """The complete `.qcw` file for `img` (header, slices, trailer) in `img.version`; records
    each layer's stored slice sizes on it (`Layer.stored`)."""
    _check_for_encode(img)
    if img.version == VERSION_PADDED:
        return _encode_padded(img)
    return _encode_packed(img)


def _pack_fixed_header(img: WeightImage, header: bytearray, file_bytes: int,
                       extra: bytes = b"") -> None:
    last = img.layers[-1]
    prov = img._provenance_bytes()
    header[:HEADER_FIXED_BYTES] = _HEADER.pack(
        MAGIC, img.version, img.header_bytes, 0, file_bytes,
        img.model_size.encode("ascii").ljust(16, b"\0"), img.nz, img.ngf, len(img.layers),
        last.h_out, last.c_out, img.latent_zp, 0, img.latent_scale, HEADER_FIXED_BYTES,
        img._tanh_offset, img._provenance_offset, len(prov), img.header_bytes, extra.ljust(52, b"\0"))
    tanh_off, prov_off = img._tanh_offset, img._provenance_offset
    header[tanh_off:tanh_off + TANH_TABLE_BYTES] = np.asarray(img.tanh_table, np.int8).tobytes()
    header[prov_off:prov_off + len(prov)] = prov


def _finish(header: bytearray, slices: list[bytes], file_bytes: int) -> bytes:
    struct.pack_into("<I", header, 12, zlib.crc32(bytes(header)))
    out = bytearray(header)
    for part in slices:
        out += part
    out += bytes(file_bytes - TRAILER_BYTES - len(out))  # packed: zeros up to the trailer's sector
    digest = hashlib.sha256(out).digest()
    out += _TRAILER_HEAD.pack(TRAILER_MAGIC, file_bytes, digest).ljust(TRAILER_BYTES, b"\0")
    assert len(out) == file_bytes
    return bytes(out)


def _encode_padded(img: WeightImage) -> bytes:
    header_bytes = img.header_bytes
    file_bytes = img.file_bytes
    header = bytearray(header_bytes)
    _pack_fixed_header(img, header, file_bytes)
    offset = header_bytes
    for i, lay in enumerate(img.layers):
        sb = slice_bytes_for(lay.c_in, lay.kernel)
        entry = _LAYER.pack(lay.c_in, lay.c_out, lay.h_in, lay.h_out, lay.kernel, lay.stride,
                            lay.padding, lay.activation, lay.in_zp, lay.out_zp, bytes(2),
                            lay.in_scale, lay.out_scale, sb, offset, bytes(28))
        start = HEADER_FIXED_BYTES + i * LAYER_ENTRY_BYTES
        header[start:start + LAYER_ENTRY_BYTES] = entry
        offset += lay.c_out * sb
        lay.stored = np.full(lay.c_out, sb, np.int64)
    return _finish(header, [_encode_slices(index, lay) for index, lay in enumerate(img.layers)],
                   file_bytes)


def _slice_tails(index: int, lay: Layer) -> np.ndarray:
    """(c_out, 16) uint8: each channel's bias, multiplier, shift, layer and channel index."""
    tail = np.zeros(lay.c_out, dtype=[("bias", "<i4"), ("mult", "<i4"), ("shift", "<i4"),
                                      ("layer", "<u2"), ("channel", "<u2")])
    tail["bias"] = lay.bias
    tail["mult"] = lay.multiplier
    tail["shift"] = lay.shift
    tail["layer"] = index
    tail["channel"] = np.arange(lay.c_out)
    return tail.view(np.uint8).reshape(lay.c_out, SLICE_TAIL_BYTES)


def _encode_slices(index: int, lay: Layer) -> bytes:
    sb = slice_bytes_for(lay.c_in, lay.kernel)
    nw = lay.kernel * lay.kernel * lay.c_in
    region = np.zeros((lay.c_out, sb), dtype=np.uint8)
    region[:, :nw] = np.ascontiguousarray(lay.weights, dtype=np.int8).reshape(
        lay.c_out, nw).view(np.uint8)
    region[:, nw:nw + SLICE_TAIL_BYTES] = _slice_tails(index, lay)
    crc_at = sb - SLICE_CRC_BYTES
    for c in range(lay.c_out):
        crc = zlib.crc32(region[c, :crc_at].tobytes())
        region[c, crc_at:] = np.frombuffer(struct.pack("<I", crc), dtype=np.uint8)
    return region.tobytes()


# --------------------------------------------------------------------------------------------
# Versions 2 and 3: packed slices, per-layer encodings


def _symbols(lay: Layer) -> np.ndarray:
    """(c_out, 16·c_in) uint8 Huffman symbols: the int8 weight + 128, in gather order."""
    w = np.ascontiguousarray(lay.weights, dtype=np.int8).reshape(lay.c_out, -1)
    return w.view(np.uint8) ^ np.uint8(0x80)


def code_lengths(counts: np.ndarray, max_bits: int = HUFF_MAX_BITS) -> np.ndarray:
    """Optimal length-limited Huffman code lengths (package-merge) for 256 symbol counts:
    uint8[256], 0 for a symbol that never occurs; one present symbol gets length 1."""
    present = [(int(counts[sym]), sym) for sym in range(256) if counts[sym] > 0]
    lengths = np.zeros(256, np.uint8)
    if not present:
        return lengths
    if len(present) == 1:
        lengths[present[0][1]] = 1
        return lengths
    present.sort()
    leaves: list[tuple[int, tuple[int, ...]]] = [(count, (sym,)) for count, sym in present]
    level = list(leaves)
    for _ in range(max_bits - 1):
        packages = [(level[i][0] + level[i + 1][0], level[i][1] + level[i + 1][1])
                    for i in range(0, len(level) - 1, 2)]
        level = sorted(leaves + packages, key=lambda item: item[0])  # stable: deterministic
    for _, syms in level[:2 * len(present) - 2]:
        for sym in syms:
            lengths[sym] += 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """uint32[256] canonical codes for `lengths`: in order of (length, symbol), each code is the
    previous plus one, shifted left when the length grows (DEFLATE's rule)."""
    codes = np.zeros(256, np.uint32)
    code, prev = 0, 0
    for sym in sorted((s for s in range(256) if lengths[s]), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev
        prev = int(lengths[sym])
        codes[sym] = code
        code += 1
    return codes


def _kraft_ok(lengths: np.ndarray) -> bool:
    used = lengths[lengths > 0].astype(np.int64)
    return used.size > 0 and int(np.sum(1 << (HUFF_MAX_BITS - used))) <= 1 << HUFF_MAX_BITS


# Huffman bit streams are built this many weights at a time (memory: ~16 bytes per bit).
_HUFF_CHUNK_WEIGHTS = 1 << 20


def _huffman_streams(sym: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """Each row of symbols as its own MSB-first bit stream, zero-padded to a whole byte."""
    codes = canonical_codes(lengths)
    rows_per_chunk = max(1, _HUFF_CHUNK_WEIGHTS // sym.shape[1])
    out: list[bytes] = []
    for start in range(0, sym.shape[0], rows_per_chunk):
        block = sym[start:start + rows_per_chunk]
        n = lengths[block].astype(np.int64).ravel()
        c = codes[block].astype(np.int64).ravel()
        ends = np.cumsum(n)
        first = np.repeat(ends - n, n)
        size = np.repeat(n, n)
        within = np.arange(int(ends[-1]), dtype=np.int64) - first
        bits = ((np.repeat(c, n) >> (size - 1 - within)) & 1).astype(np.uint8)
        row_ends = ends[block.shape[1] - 1::block.shape[1]]
        row_starts = np.concatenate(([0], row_ends[:-1]))
        for a, b in zip(row_starts.tolist(), row_ends.tolist(), strict=True):
            out.append(np.packbits(bits[a:b]).tobytes())
    return out


def _packed4_streams(lay: Layer) -> list[bytes]:
    """Two 4-bit weights per byte: weight 2k in the low nibble, 2k+1 in the high one."""
    w = np.ascontiguousarray(lay.weights, dtype=np.int8).reshape(lay.c_out, -1).view(np.uint8)
    nib = w & np.uint8(0x0F)
    packed = nib[:, 0::2] | (nib[:, 1::2] << np.uint8(4))
    return [row.tobytes() for row in packed]


def _raw_streams(lay: Layer) -> list[bytes]:
    w = np.ascontiguousarray(lay.weights, dtype=np.int8).reshape(lay.c_out, -1)
    return [row.tobytes() for row in w.view(np.uint8)]


def _layer_lengths(lay: Layer) -> np.ndarray | None:
    if lay.encoding != "huffman":
        return None
    return code_lengths(np.bincount(_symbols(lay).ravel(), minlength=256))


def _packed_slices(index: int, lay: Layer, lengths: np.ndarray | None) -> list[bytes]:
    """Every slice of a layer as stored in versions 2 and 3: weight stream, tail, CRC-32."""
    if lay.encoding == "huffman":
        assert lengths is not None
        streams = _huffman_streams(_symbols(lay), lengths)
    elif lay.encoding == "packed4":
        streams = _packed4_streams(lay)
    else:
        streams = _raw_streams(lay)
    tails = _slice_tails(index, lay)
    out = []
    for c, stream in enumerate(streams):
        body = stream + tails[c].tobytes()
        out.append(body + struct.pack("<I", zlib.crc32(body)))
    return out


def _ensure_stored(img: WeightImage) -> None:
    """Fill `Layer.stored` of a packed image not yet written (encodes the slices to count)."""
    for index, lay in enumerate(img.layers):
        if lay.stored is None:
            lay.stored = np.array([len(b) for b in
                                   _packed_slices(index, lay, _layer_lengths(lay))], np.int64)


def _encode_packed(img: WeightImage) -> bytes:
    tables = [_layer_lengths(lay) for lay in img.layers]
    slices = [_packed_slices(i, lay, tables[i]) for i, lay in enumerate(img.layers)]
    for lay, parts in zip(img.layers, slices, strict=True):
        lay.stored = np.array([len(b) for b in parts], np.int64)
    header_bytes = img.header_bytes
    file_bytes = img.file_bytes
    dir_off, n_entries = img._directory_offset, img.n_slices + 1
    header = bytearray(header_bytes)
    _pack_fixed_header(img, header, file_bytes, struct.pack("<II", dir_off, n_entries))
    sizes = np.concatenate([lay.stored for lay in img.layers])
    offsets = header_bytes + np.concatenate(([0], np.cumsum(sizes)))
    header[dir_off:dir_off + DIR_ENTRY_BYTES * n_entries] = offsets.astype("<u4").tobytes()
    codes_at = img._code_lengths_offset
    first = 0
    for i, (lay, lengths) in enumerate(zip(img.layers, tables, strict=True)):
        table_off = 0
        if lengths is not None:
            table_off = codes_at
            header[codes_at:codes_at + CODE_LENGTHS_BYTES] = lengths.tobytes()
            codes_at += CODE_LENGTHS_BYTES
        extra = struct.pack("<BBHIQ", ENCODINGS[lay.encoding], lay.weight_bits, 0, table_off,
                            lay.stored_bytes)
        entry = _LAYER.pack(lay.c_in, lay.c_out, lay.h_in, lay.h_out, lay.kernel, lay.stride,
                            lay.padding, lay.activation, lay.in_zp, lay.out_zp, bytes(2),
                            lay.in_scale, lay.out_scale, lay.max_slice_bytes,
                            int(offsets[first]), extra.ljust(28, b"\0"))
        start = HEADER_FIXED_BYTES + i * LAYER_ENTRY_BYTES
        header[start:start + LAYER_ENTRY_BYTES] = entry
        first += lay.c_out
    return _finish(header, [b"".join(parts) for parts in slices], file_bytes)


def with_format(img: WeightImage, version: int = DEFAULT_VERSION,
                encoding: str = "huffman") -> WeightImage:
    """The same model to be written as `version` with every layer in `encoding` (re-encoding is
    lossless: the weights are the same int8 values). Version 1 is raw only; a 4-bit layer keeps
    its width and is stored as whichever of huffman and packed4 takes fewer bytes when
    `encoding` is huffman (packed4 when raw is asked: 4-bit weights are never stored as bytes)."""
    if version not in VERSIONS:
        raise ValueError(f"format version {version} is not one of {VERSIONS}")
    if encoding not in ("raw", "huffman"):
        raise ValueError(f"encoding {encoding!r}")
    layers = []
    for index, lay in enumerate(img.layers):
        new = dataclasses.replace(lay, stored=None)
        if version == VERSION_PADDED:
            new.encoding = "raw"
        elif lay.weight_bits == 4:
            new.encoding = "packed4"
            if encoding == "huffman":
                packed = lay.c_out * (lay.weights_per_slice // 2 + SLICE_FIXED_BYTES)
                huff = dataclasses.replace(lay, encoding="huffman", stored=None)
                sizes = [len(b) for b in _packed_slices(index, huff, _layer_lengths(huff))]
                if sum(sizes) < packed:
                    new.encoding, new.stored = "huffman", np.array(sizes, np.int64)
        else:
            new.encoding = encoding
        layers.append(new)
    out = dataclasses.replace(img, layers=layers, version=version)
    if version == VERSION_PADDED:
        for lay in out.layers:
            lay.stored = np.full(lay.c_out, slice_bytes_for(lay.c_in, lay.kernel), np.int64)
    else:
        _ensure_stored(out)
    return out


def choose_version(img: WeightImage, version: int | None) -> int:
    """The version to write `img` in: asked for, or the lossless default (3 when it has 4-bit
    layers, which only version 3 holds); UsageError when the asked one cannot hold it."""
    four = any(lay.weight_bits == 4 for lay in img.layers)
    if version is None:
        return VERSION_INT4 if four else DEFAULT_VERSION
    if four and version != VERSION_INT4:
        raise UsageError(f"format version {version} cannot hold this model's 4-bit layers",
                         hint="write version 3 (leave --format out)")
    if not four and version == VERSION_INT4:
        raise UsageError("format version 3 is for models with 4-bit layers; this one has none",
                         hint="write version 2 (the default) or 1")
    return version


def convert(source: Path, out: Path, version: int | None = None,
            encoding: str = "huffman") -> tuple[WeightImage, str]:
    """Re-encode a weight image (e.g. v1 -> v2 Huffman) without changing a weight: the new file
    is checked to decode to exactly the source's model before it is published. Returns the
    written image and its SHA-256."""
    img = load(source)
    new = with_format(img, choose_version(img, version), encoding)
    data = encode(new)
    back = decode(data)
    for a, b in zip(img.layers, back.layers, strict=True):
        if not all(np.array_equal(getattr(a, k), getattr(b, k))
                   for k in ("weights", "bias", "multiplier", "shift")):
            raise AssertionError("re-encoding changed a weight")  # a writer bug, never input
    return new, write_atomic(Path(out), data)


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
    if version not in VERSIONS:
        raise FormatError(f"the weight image has format version {version}; this qcat reads "
                          f"versions 1, 2 and 3", hint=REBUILD_HINT)
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

    entries = [_LAYER.unpack_from(data, table_off + i * LAYER_ENTRY_BYTES) for i in range(n_layers)]
    layers = _read_layer_table(entries, nz, latent_zp)
    if layers[-1].c_out != channels or layers[-1].h_out != image_size:
        raise _bad("the weight image's last layer does not make its stated image size")
    if version == VERSION_PADDED:
        _read_padded(data, entries, layers, header_bytes, file_bytes)
    else:
        _read_packed(data, version, entries, layers, header_bytes, file_bytes, _res2)
    _check_trailer(data, file_bytes)
    return WeightImage(size_name, nz, ngf, float(latent_scale), latent_zp, layers, tanh_table,
                       provenance, image_size, channels, version)


def _read_layer_table(entries: list[tuple[Any, ...]], nz: int, latent_zp: int) -> list[Layer]:
    """The layer shapes, checked to chain from the latent to the image (every version)."""
    layers: list[Layer] = []
    prev_c, prev_h, prev_zp = nz, 1, latent_zp
    for i, e in enumerate(entries):
        (c_in, c_out, h_in, h_out, kernel, stride, padding, act, in_zp, out_zp, _r, in_scale,
         out_scale, _slice_bytes, _layer_off, _r2) = e
        where = f"layer {i + 1}"  # people count layers from 1 (DESIGN §5)
        if c_in != prev_c or h_in != prev_h or c_out == 0:
            raise _bad(f"{where} does not follow the previous layer's shape")
        if kernel != KERNEL or stride not in (1, 2) or padding not in (0, 1):
            raise _bad(f"{where} has an unsupported kernel {kernel}, stride {stride} or "
                       f"padding {padding}")
        if h_out != (h_in - 1) * stride - 2 * padding + kernel:
            raise _bad(f"{where} has an output size {h_out} its shape does not give")
        want_act = ACT_TANH if i == len(entries) - 1 else ACT_RELU
        if act != want_act:
            raise _bad(f"{where} has activation {act}; expected {ACTIVATIONS[want_act]}")
        if in_zp != prev_zp:
            raise _bad(f"{where} input zero point {in_zp} differs from the previous output's "
                       f"{prev_zp}")
        layers.append(Layer(c_in, c_out, h_in, h_out, kernel, stride, padding, act, in_zp, out_zp,
                            float(in_scale), float(out_scale), np.empty(0), np.empty(0),
                            np.empty(0), np.empty(0)))
        prev_c, prev_h, prev_zp = c_out, h_out, out_zp
    return layers


def _read_padded(data: bytes, entries: list[tuple[Any, ...]], layers: list[Layer],
                 header_bytes: int, file_bytes: int) -> None:
    """Version 1: fixed-size sector-padded slices, raw int8."""
    offset = header_bytes
    for i, (lay, e) in enumerate(zip(layers, entries, strict=True)):
        slice_bytes, layer_off, reserved = e[13], e[14], e[15]
        where = f"layer {i + 1}"
        if slice_bytes != slice_bytes_for(lay.c_in, lay.kernel):
            raise _bad(f"{where} has slice size {slice_bytes}; its shape needs "
                       f"{slice_bytes_for(lay.c_in, lay.kernel)}")
        if layer_off != offset:
            raise _bad(f"{where} starts at byte {layer_off}, expected {offset}")
        if any(reserved):
            raise _bad(f"{where} has a weight encoding, which version 1 does not have")
        offset += lay.c_out * slice_bytes
    if offset + TRAILER_BYTES != file_bytes:
        raise _bad(f"the weight image's layers end at byte {offset}, but its size says "
                   f"{file_bytes - TRAILER_BYTES}")
    for i, lay in enumerate(layers):
        _read_slices(data, i, lay, entries[i][14])


def _read_slices(data: bytes, index: int, lay: Layer, offset: int) -> None:
    """Fill `lay` from its padded slices, checking each slice's CRC and its own layer/channel
    index."""
    sb = slice_bytes_for(lay.c_in, lay.kernel)
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
    _set_tails(index, lay, np.ascontiguousarray(region[:, nw:nw + SLICE_TAIL_BYTES]))
    lay.weights = np.ascontiguousarray(region[:, :nw]).view(np.int8).reshape(
        lay.c_out, lay.kernel, lay.kernel, lay.c_in)
    lay.stored = np.full(lay.c_out, sb, np.int64)
    problem = _constant_problem(lay)
    if problem:
        raise _bad(f"layer {index + 1}, channel {problem[0]}: {problem[1]}")


def _set_tails(index: int, lay: Layer, tails: np.ndarray) -> None:
    """Bias, multiplier and shift from (c_out, 16) tail bytes, after checking each slice names
    its own layer and channel (a slice read from the wrong place)."""
    tail = tails.view([("bias", "<i4"), ("mult", "<i4"), ("shift", "<i4"), ("layer", "<u2"),
                       ("channel", "<u2")]).reshape(lay.c_out)
    wrong = np.flatnonzero((tail["layer"] != index) | (tail["channel"] != np.arange(lay.c_out)))
    if wrong.size:
        c = int(wrong[0])
        raise _bad(f"layer {index + 1}, channel {c}: the slice there belongs to layer "
                   f"{int(tail['layer'][c]) + 1}, channel {tail['channel'][c]}")
    lay.bias = tail["bias"].astype(np.int32)
    lay.multiplier = tail["mult"].astype(np.int32)
    lay.shift = tail["shift"].astype(np.int32)


def _read_packed(data: bytes, version: int, entries: list[tuple[Any, ...]], layers: list[Layer],
                 header_bytes: int, file_bytes: int, reserved: bytes) -> None:
    """Versions 2 and 3: the slice directory, each layer's encoding, then every slice."""
    dir_off, n_entries = struct.unpack_from("<II", reserved, 0)
    n_slices = sum(lay.c_out for lay in layers)
    if (n_entries != n_slices + 1 or dir_off < HEADER_FIXED_BYTES
            or dir_off + DIR_ENTRY_BYTES * n_entries > header_bytes or any(reserved[8:])):
        raise _bad("the weight image's slice directory is outside its header or the wrong size")
    offsets = np.frombuffer(data, dtype="<u4", count=n_entries, offset=dir_off).astype(np.int64)
    if offsets[0] != header_bytes or np.any(np.diff(offsets) < SLICE_FIXED_BYTES):
        raise _bad("the weight image's slice directory is not in order")
    end = int(offsets[-1])
    if _round_up(end) + TRAILER_BYTES != file_bytes:
        raise _bad(f"the weight image's slices end at byte {end}, but its size says "
                   f"{file_bytes - TRAILER_BYTES}")
    if any(data[end:file_bytes - TRAILER_BYTES]):
        raise _bad("the weight image has nonzero bytes between its last slice and its trailer")
    first = 0
    tables: list[np.ndarray | None] = []
    for i, (lay, e) in enumerate(zip(layers, entries, strict=True)):
        slice_bytes, layer_off, extra = e[13], e[14], e[15]
        enc, bits, _pad, table_off, stored_total = struct.unpack_from("<BBHIQ", extra, 0)
        where = f"layer {i + 1}"
        sizes = np.diff(offsets[first:first + lay.c_out + 1])
        if (layer_off != offsets[first] or stored_total != int(sizes.sum())
                or slice_bytes != int(sizes.max()) or any(extra[16:])):
            raise _bad(f"{where}'s offsets or sizes disagree with the slice directory")
        if enc not in ENCODING_NAMES or bits not in (4, 8):
            raise _bad(f"{where} has an unknown weight encoding {enc} or width {bits}")
        lay.encoding, lay.weight_bits = ENCODING_NAMES[enc], bits
        problem = _encoding_problem(version, lay, weights=False)
        if problem:
            raise _bad(f"{where}: {problem[1]}")
        lengths = None
        if lay.encoding == "huffman":
            if table_off < HEADER_FIXED_BYTES or table_off + CODE_LENGTHS_BYTES > header_bytes:
                raise _bad(f"{where}'s Huffman code lengths lie outside the header")
            lengths = np.frombuffer(data, np.uint8, CODE_LENGTHS_BYTES, table_off).copy()
            allowed = np.zeros(256, bool)
            span = INT4_MAX if bits == 4 else WEIGHT_MAX
            allowed[128 - span:128 + span + 1] = True
            if lengths.max() > HUFF_MAX_BITS or np.any(lengths[~allowed]) or not _kraft_ok(lengths):
                raise _bad(f"{where}'s Huffman code lengths are not a valid code")
        elif table_off != 0:
            raise _bad(f"{where} names a Huffman table but is not Huffman-coded")
        fixed = {"raw": lay.weights_per_slice, "packed4": lay.weights_per_slice // 2}
        if lay.encoding in fixed and np.any(sizes != fixed[lay.encoding] + SLICE_FIXED_BYTES):
            raise _bad(f"{where}'s slices are not the size its {lay.encoding} weights need")
        tables.append(lengths)
        lay.stored = sizes
        first += lay.c_out
    if version == VERSION_INT4 and all(lay.weight_bits == 8 for lay in layers):
        raise _bad("the weight image says version 3 but has no 4-bit layer")
    first = 0
    for i, lay in enumerate(layers):
        _read_packed_slices(data, i, lay, offsets[first:first + lay.c_out + 1], tables[i])
        first += lay.c_out


def _read_packed_slices(data: bytes, index: int, lay: Layer, offsets: np.ndarray,
                        lengths: np.ndarray | None) -> None:
    """Check every slice's CRC (before decoding any weight), its layer/channel index, then
    decode the weights to int8."""
    view = memoryview(data)
    for c in range(lay.c_out):
        a, b = int(offsets[c]), int(offsets[c + 1])
        stored = struct.unpack_from("<I", data, b - SLICE_CRC_BYTES)[0]
        if zlib.crc32(view[a:b - SLICE_CRC_BYTES]) != stored:
            raise _bad(f"layer {index + 1}, channel {c}: CRC mismatch")
    tails = np.stack([np.frombuffer(data, np.uint8, SLICE_TAIL_BYTES,
                                    int(offsets[c + 1]) - SLICE_FIXED_BYTES)
                      for c in range(lay.c_out)])
    _set_tails(index, lay, tails)
    streams = [view[int(offsets[c]):int(offsets[c + 1]) - SLICE_FIXED_BYTES]
               for c in range(lay.c_out)]
    n = lay.weights_per_slice
    if lay.encoding == "raw":
        w = np.frombuffer(b"".join(streams), np.int8).reshape(lay.c_out, n)
    elif lay.encoding == "packed4":
        packed = np.frombuffer(b"".join(streams), np.uint8).reshape(lay.c_out, n // 2)
        nib = np.empty((lay.c_out, n), np.uint8)
        nib[:, 0::2] = packed & 0x0F
        nib[:, 1::2] = packed >> 4
        w = ((nib.astype(np.int16) ^ 8) - 8).astype(np.int8)  # two's complement nibbles
        bad = np.flatnonzero((w == -8).any(axis=1))
        if bad.size:
            raise _bad(f"layer {index + 1}, channel {int(bad[0])}: 4-bit weight -8")
    else:
        assert lengths is not None
        w, bad_channel = _huffman_decode(streams, lengths, n)
        if bad_channel is not None:
            raise _bad(f"layer {index + 1}, channel {bad_channel}: the Huffman stream does not "
                       f"decode to {n} weights")
    lay.weights = np.ascontiguousarray(w).reshape(lay.c_out, lay.kernel, lay.kernel, lay.c_in)
    problem = _encoding_problem(VERSION_INT4, lay) or _constant_problem(lay)
    if problem:
        raise _bad(f"layer {index + 1}, channel {problem[0]}: {problem[1]}")


def huffman_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's lookup table: for each 12-bit window (the next bits, MSB first), the symbol
    and the length of the code it starts with (length 0: no code starts so)."""
    codes = canonical_codes(lengths)
    sym = np.zeros(1 << HUFF_MAX_BITS, np.uint8)
    size = np.zeros(1 << HUFF_MAX_BITS, np.uint8)
    for s in np.flatnonzero(lengths):
        shift = HUFF_MAX_BITS - int(lengths[s])
        lo = int(codes[s]) << shift
        sym[lo:lo + (1 << shift)] = s
        size[lo:lo + (1 << shift)] = lengths[s]
    return sym, size


def _huffman_decode(streams: list[memoryview], lengths: np.ndarray,
                    n: int) -> tuple[np.ndarray, int | None]:
    """Decode every channel's stream at once, one symbol of all channels per step: (c_out, n)
    int8 and the first channel whose stream is not exactly n codes plus zero padding."""
    sym_of, len_of = huffman_table(lengths)
    rows = len(streams)
    width = max(len(s) for s in streams) + 3  # zeros past the end: reading ahead is harmless
    buf = np.zeros((rows, width), np.uint8)
    nbytes = np.array([len(s) for s in streams], np.int64)
    for r, s in enumerate(streams):
        buf[r, :len(s)] = np.frombuffer(s, np.uint8)
    wide = buf.astype(np.uint32)
    pos = np.zeros(rows, np.int64)
    out = np.empty((rows, n), np.uint8)
    ok = np.ones(rows, bool)
    idx = np.arange(rows)
    for k in range(n):
        byte = pos >> 3
        window = (wide[idx, byte] << 16) | (wide[idx, byte + 1] << 8) | wide[idx, byte + 2]
        peek = (window >> (24 - HUFF_MAX_BITS - (pos & 7))) & ((1 << HUFF_MAX_BITS) - 1)
        size = len_of[peek]
        ok &= size > 0
        out[:, k] = sym_of[peek]
        pos += np.maximum(size, 1)
        pos = np.minimum(pos, 8 * (width - 3))
    ok &= (pos + 7) // 8 == nbytes
    for row in np.flatnonzero(ok).tolist():  # the padding bits after the last code are zero
        used = int(pos[row])
        if used % 8 and buf[row, used // 8] & (0xFF >> (used % 8)):
            ok[row] = False
    bad = np.flatnonzero(~ok)
    return (out ^ np.uint8(0x80)).view(np.int8), (int(bad[0]) if bad.size else None)


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


def slice_offsets(img: WeightImage) -> list[np.ndarray]:
    """Per layer, the file offsets of its slices plus the end of its last (c_out + 1 values), as
    `encode(img)` lays them out."""
    if img.version != VERSION_PADDED:
        _ensure_stored(img)
    offset, out = img.header_bytes, []
    for lay in img.layers:
        sizes = (np.full(lay.c_out, slice_bytes_for(lay.c_in, lay.kernel), np.int64)
                 if img.version == VERSION_PADDED else np.asarray(lay.stored, np.int64))
        out.append(offset + np.concatenate(([0], np.cumsum(sizes))))
        offset = int(out[-1][-1])
    return out


@dataclass(frozen=True)
class ReadUnit:
    """One multi-block read of the C engine: `count` slices of layer `layer` (from 0) from
    channel `first`, fetched as the whole sectors [start, end) of the file."""

    layer: int
    first: int
    count: int
    start: int
    end: int

    @property
    def bytes(self) -> int:
        return self.end - self.start


def read_units(img: WeightImage, read_bytes: int = READ_BYTES) -> list[ReadUnit]:
    """The byte ranges the C engine reads, in order (cat_engine.c's unit_at): as many whole
    slices of one layer as span at most max(read_bytes, largest slice), at least one, widened to
    whole sectors. The time model counts sectors and reads from these."""
    offsets = slice_offsets(img)
    largest = max(int(np.max(np.diff(o))) for o in offsets)
    limit = max(read_bytes, largest)
    units = []
    for index, offs in enumerate(offsets):
        first, n = 0, len(offs) - 1
        while first < n:
            # the last slice whose end lies within `limit` of this unit's start
            count = max(1, int(np.searchsorted(offs, offs[first] + limit, side="right")) - 1 - first)
            count = min(count, n - first)
            start = int(offs[first]) // SECTOR * SECTOR
            units.append(ReadUnit(index, first, count, start, _round_up(int(offs[first + count]))))
            first += count
    return units


def describe(img: WeightImage, data_len: int | None = None,
             sha256: str | None = None) -> dict[str, Any]:
    """A JSON-ready description (what `qcat sd weights inspect --json` prints): per layer its
    encoding, weights, stored bytes and bits per weight; the total; v1's padding tax."""
    raw = img.conv_weights
    file_bytes = img.file_bytes
    slice_total = img.slice_bytes_total
    tails = sum(lay.c_out for lay in img.layers) * SLICE_FIXED_BYTES
    padding = slice_total - raw - tails if img.version == VERSION_PADDED else 0
    return {
        "format_version": img.version,
        "model_size": img.model_size,
        "nz": img.nz,
        "ngf": img.ngf,
        "conv_weights": raw,
        "weight_mib": round(raw / 2**20, 2),
        "bytes": data_len if data_len is not None else file_bytes,
        "mib": round((data_len or file_bytes) / 2**20, 2),
        "slice_bytes_total": slice_total,
        "bits_per_weight": round(8 * slice_total / raw, 4),
        "padding_bytes": padding,
        "padding_percent": round(100 * padding / raw, 2),
        "header_bytes": img.header_bytes,
        "sha256": sha256,
        "latent": {"scale": img.latent_scale, "zero_point": img.latent_zp},
        "layers": [{
            "index": i, "c_in": lay.c_in, "c_out": lay.c_out, "h_in": lay.h_in,
            "h_out": lay.h_out, "kernel": lay.kernel, "stride": lay.stride,
            "padding": lay.padding, "activation": ACTIVATIONS[lay.activation],
            "in_zp": lay.in_zp, "out_zp": lay.out_zp, "in_scale": lay.in_scale,
            "out_scale": lay.out_scale, "weights": lay.n_weights,
            "encoding": lay.encoding, "weight_bits": lay.weight_bits,
            "slice_bytes": lay.slice_bytes, "max_slice_bytes": lay.max_slice_bytes,
            "bytes": lay.stored_bytes, "stored_bytes": lay.stored_bytes,
            "bits_per_weight": round(lay.bits_per_weight, 4),
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


def synthetic(size: str = "demo", seed: int = 0, like: WeightImage | None = None) -> WeightImage:
    """A random int8 generator of a named size whose activations use the int8 range.

    With `like` (a trained image of any size), each layer's weights are drawn from the value
    frequencies of the same layer of `like`, with its width (8 or 4 bits) and encoding: a model
    of this size that compresses as the trained one does. Uniform random weights, the default,
    are incompressible, so they cannot stand in for a trained model in the time model's bytes."""
    from models import reference  # the integer helpers; imported here to avoid a cycle

    if size not in SIZES:
        raise InputError(f"unknown model size {size!r}", hint=f"use one of {', '.join(SIZES)}")
    rng = np.random.default_rng(seed)
    nz, ngf = NZ, SIZES[size]
    latent_zp = int(rng.integers(-8, 9))
    latent_scale = float(np.float32(SYNTH_LATENT_RANGE / 120))
    provenance: dict[str, Any] = {"tool": "models.weightimage.synthetic", "seed": seed,
                                  "size": size}
    if like is not None:
        provenance["weights_like"] = like.provenance.get("checkpoint_sha256") or like.model_size
    img = WeightImage(size, nz, ngf, latent_scale, latent_zp, [], np.zeros(256, np.int8),
                      provenance)
    z = rng.standard_normal((SYNTH_CALIBRATION_LATENTS, nz))
    x = reference.quantize_latent(z, img)[:, :, None, None]  # (N, nz, 1, 1)
    in_zp, in_scale = latent_zp, latent_scale
    for index, shape in enumerate(generator_layout(nz, ngf)):
        wshape = (shape.c_out, KERNEL, KERNEL, shape.c_in)
        if like is None:
            w = rng.integers(-WEIGHT_MAX, WEIGHT_MAX + 1, size=wshape, dtype=np.int8)
        else:
            values, counts = np.unique(like.layers[index].weights, return_counts=True)
            w = rng.choice(values, size=wshape, p=counts / counts.sum()).astype(np.int8)
        if shape.activation == ACT_RELU:
            out_zp = int(rng.integers(-128, -96))
        else:
            out_zp = int(rng.integers(-10, 11))
        lay = Layer(shape.c_in, shape.c_out, shape.h_in, shape.h_out, KERNEL, shape.stride,
                    shape.padding, shape.activation, in_zp, out_zp, in_scale, 0.0, w,
                    np.zeros(shape.c_out, np.int32), np.zeros(shape.c_out, np.int32),
                    np.zeros(shape.c_out, np.int32))
        if like is not None:
            lay.weight_bits = like.layers[index].weight_bits
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
