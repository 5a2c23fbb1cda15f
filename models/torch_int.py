"""The int8 cat generator computed with PyTorch int64 tensors: a second, independent integer path.

`models.reference` (numpy) sums products with float64 matmuls and scatters them per kernel tap;
this module does it the textbook way: an explicit im2col *gather* (for every output pixel, the
input pixels each tap reads, per docs/formats.md's formula, as index tensors) and one int64
matmul per layer, then the gemmlowp requantization written again with torch integer ops. Tests
compare the two per layer with ==, so "bit-identical to a PyTorch reference" is literally true.

PyTorch's own quantized kernels use a float multiplier with round-half-even and are *not* this
arithmetic (int8.md); nothing here uses torch.ao. Imports torch: test/export path only.
"""

from __future__ import annotations

import numpy as np
import torch

from models.weightimage import ACT_RELU, Layer, WeightImage


def _gather_index(lay: Layer) -> torch.Tensor:
    """(k*k, h_out*h_out) indices into the flattened input plus one zero slot (index h_in²)
    for taps that fall outside the input or between strides."""
    k, s, p, h, ho = lay.kernel, lay.stride, lay.padding, lay.h_in, lay.h_out
    oy = torch.arange(ho).view(ho, 1).expand(ho, ho)
    ox = torch.arange(ho).view(1, ho).expand(ho, ho)
    rows = []
    for ky in range(k):
        for kx in range(k):
            ny, nx = oy + p - ky, ox + p - kx
            iy, ix = torch.div(ny, s, rounding_mode="floor"), torch.div(nx, s, rounding_mode="floor")
            ok = (ny % s == 0) & (nx % s == 0) & (iy >= 0) & (iy < h) & (ix >= 0) & (ix < h)
            rows.append(torch.where(ok, iy * h + ix, torch.full_like(iy, h * h)).flatten())
    return torch.stack(rows)


def srdhm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    high = torch.bitwise_right_shift(a * b + (1 << 30), 31)
    both_min = (a == -(2**31)) & (b == -(2**31))
    return torch.where(both_min, torch.full_like(high, 2**31 - 1), high)


def rdbpot(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    mask = torch.bitwise_left_shift(torch.ones_like(e), e) - 1
    remainder = torch.bitwise_and(x, mask)
    threshold = torch.bitwise_right_shift(mask, 1) + (x < 0).to(torch.int64)
    return torch.bitwise_right_shift(x, e) + (remainder > threshold).to(torch.int64)


def mbqm(x: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    left = torch.clamp(s, min=0)
    right = torch.clamp(-s, min=0)
    return rdbpot(srdhm(torch.bitwise_left_shift(x, left), m), right)


def layer_int(lay: Layer, x: torch.Tensor, tanh_table: torch.Tensor) -> torch.Tensor:
    """x: (c_in, h_in, h_in) int64 holding int8 values -> (c_out, h_out, h_out) int64 (int8)."""
    c_in, h = lay.c_in, lay.h_in
    xs = (x.reshape(c_in, h * h) - lay.in_zp)
    xs = torch.cat([xs, torch.zeros(c_in, 1, dtype=torch.int64)], dim=1)  # the zero slot
    idx = _gather_index(lay)  # (k*k, P)
    cols = xs[:, idx]  # (c_in, k*k, P): cols[ci, t, pix] = x tap t of pixel pix
    cols = cols.permute(1, 0, 2).reshape(lay.kernel**2 * c_in, -1)  # rows in [ky][kx][ci] order
    w = torch.from_numpy(lay.weights.astype(np.int64)).reshape(lay.c_out, -1)
    acc = w @ cols + torch.from_numpy(lay.bias.astype(np.int64))[:, None]
    m = torch.from_numpy(lay.multiplier.astype(np.int64))[:, None]
    s = torch.from_numpy(lay.shift.astype(np.int64))[:, None]
    q = mbqm(acc, m, s) + lay.out_zp
    if lay.activation == ACT_RELU:
        out = torch.clamp(q, lay.out_zp, 127)
    else:
        out = tanh_table[torch.clamp(q, -128, 127) + 128]
    return out.reshape(lay.c_out, lay.h_out, lay.h_out)


def run(img: WeightImage, latent_q: np.ndarray) -> list[np.ndarray]:
    """Every layer's int8 output (C, H, W) for one int8 latent, computed in int64 tensors."""
    table = torch.from_numpy(np.asarray(img.tanh_table, dtype=np.int64))
    x = torch.from_numpy(np.asarray(latent_q, dtype=np.int64)).reshape(-1, 1, 1)
    outs = []
    for lay in img.layers:
        x = layer_int(lay, x, table)
        outs.append(x.numpy().astype(np.int8))
    return outs
