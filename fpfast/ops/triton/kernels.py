"""The fused residual + raw-sums kernel (see :mod:`fpfast.ops.sums` for the contract).

One program per (tile, image). A tile is TILE_H x TILE_W pixels (powers of 2, multiples of 8,
anchored at (0, 0)) so 8x8 DCT blocks never straddle tiles. The program reads its tile's pixels and
their halo straight from the input (any strides, uint8 or float32; reflect borders), keeps the
residual in registers and writes float32 partial sums [n_sums] for its tile; the host reduces them
over tiles in float64. Per-phase and per-DCT-frequency sums are one-hot matrix products
(R @ e @ C with R[a, i] = (i % p == a)), the block DCT is a block-diagonal product; every tl.dot
uses input_precision="ieee" so no tf32 enters. Plain pointer arithmetic and masks only
(Triton 3.6 .. 3.9, compiled or interpreted).
"""
import triton
import triton.language as tl

from ... import contract as C

# Residual operator codes and the sums layout of the kernel contract (csrc/contract.h), as
# constexpr globals (the only globals a jitted function may read).
OP_DENOISE = tl.constexpr(C.OP_CODES["denoise"])
OP_MEDIAN3 = tl.constexpr(C.OP_CODES["median3"])
OP_NPR = tl.constexpr(C.OP_CODES["npr"])
OP_HIGHPASS = tl.constexpr(C.OP_CODES["highpass"])
OP_NONE = tl.constexpr(C.OP_CODES["none"])
OFF_S1 = tl.constexpr(C.OFF_S1)
OFF_S2 = tl.constexpr(C.OFF_S2)
OFF_S3 = tl.constexpr(C.OFF_S3)
OFF_S4 = tl.constexpr(C.OFF_S4)
OFF_X = tl.constexpr(C.OFF_X)
assert C.DCT_BLOCK == 8, "the kernel's DCT is written for 8x8 blocks"


@triton.jit
def _reflect(i, n):
    """Reflect index (scipy 'mirror': -i, 2n-2-i) then clamp (clamping only hits masked pixels)."""
    i = tl.where(i < 0, -i, i)
    i = tl.where(i >= n, 2 * n - 2 - i, i)
    return tl.minimum(tl.maximum(i, 0), n - 1)


@triton.jit
def _ld(base, roff, coff, mask, IS_U8: tl.constexpr):
    v = tl.load(base + roff + coff, mask=mask, other=0)
    if IS_U8:
        v = v.to(tl.float32) / 255.0  # as torch: x.float() / 255
    return v


@triton.jit
def _sort2(a, b):
    return tl.minimum(a, b), tl.maximum(a, b)


@triton.jit
def _median9(p0, p1, p2, p3, p4, p5, p6, p7, p8):
    """Median of 9 by the 19-exchange network (Paeth; Devillard's opt_med9)."""
    p1, p2 = _sort2(p1, p2)
    p4, p5 = _sort2(p4, p5)
    p7, p8 = _sort2(p7, p8)
    p0, p1 = _sort2(p0, p1)
    p3, p4 = _sort2(p3, p4)
    p6, p7 = _sort2(p6, p7)
    p1, p2 = _sort2(p1, p2)
    p4, p5 = _sort2(p4, p5)
    p7, p8 = _sort2(p7, p8)
    p0, p3 = _sort2(p0, p3)
    p5, p8 = _sort2(p5, p8)
    p4, p7 = _sort2(p4, p7)
    p3, p6 = _sort2(p3, p6)
    p1, p4 = _sort2(p1, p4)
    p2, p5 = _sort2(p2, p5)
    p4, p7 = _sort2(p4, p7)
    p4, p2 = _sort2(p4, p2)
    p6, p4 = _sort2(p6, p4)
    p4, p2 = _sort2(p4, p2)
    return p4


@triton.jit
def _hrow(base, ro, c0, c1, c2, c3, c4, k0, k1, k2, k3, k4, mask, IS_U8: tl.constexpr):
    """Horizontal 5-tap pass on one (reflected) row offset."""
    return (k0 * _ld(base, ro, c0, mask, IS_U8) + k1 * _ld(base, ro, c1, mask, IS_U8)
            + k2 * _ld(base, ro, c2, mask, IS_U8) + k3 * _ld(base, ro, c3, mask, IS_U8)
            + k4 * _ld(base, ro, c4, mask, IS_U8))


@triton.jit
def _residual(base, ii, jj, H, W, sh, sw, valid, k0, k1, k2, k3, k4,
              OP: tl.constexpr, IS_U8: tl.constexpr):
    """Residual of one channel on the tile ([TILE_H, 1] rows ii, [1, TILE_W] cols jj); 0 off-image."""
    r0 = _reflect(ii, H) * sh
    c0 = _reflect(jj, W) * sw
    x = _ld(base, r0, c0, valid, IS_U8)
    if OP == OP_DENOISE:  # denoise: x - (vertical o horizontal) 5-tap Gaussian
        cm2 = _reflect(jj - 2, W) * sw
        cm1 = _reflect(jj - 1, W) * sw
        cp1 = _reflect(jj + 1, W) * sw
        cp2 = _reflect(jj + 2, W) * sw
        y = k0 * _hrow(base, _reflect(ii - 2, H) * sh, cm2, cm1, c0, cp1, cp2, k0, k1, k2, k3, k4, valid, IS_U8)
        y += k1 * _hrow(base, _reflect(ii - 1, H) * sh, cm2, cm1, c0, cp1, cp2, k0, k1, k2, k3, k4, valid, IS_U8)
        y += k2 * _hrow(base, r0, cm2, cm1, c0, cp1, cp2, k0, k1, k2, k3, k4, valid, IS_U8)
        y += k3 * _hrow(base, _reflect(ii + 1, H) * sh, cm2, cm1, c0, cp1, cp2, k0, k1, k2, k3, k4, valid, IS_U8)
        y += k4 * _hrow(base, _reflect(ii + 2, H) * sh, cm2, cm1, c0, cp1, cp2, k0, k1, k2, k3, k4, valid, IS_U8)
        r = x - y
    elif OP == OP_MEDIAN3:  # median3
        rm = _reflect(ii - 1, H) * sh
        rp = _reflect(ii + 1, H) * sh
        cm = _reflect(jj - 1, W) * sw
        cp = _reflect(jj + 1, W) * sw
        med = _median9(_ld(base, rm, cm, valid, IS_U8), _ld(base, rm, c0, valid, IS_U8),
                       _ld(base, rm, cp, valid, IS_U8), _ld(base, r0, cm, valid, IS_U8), x,
                       _ld(base, r0, cp, valid, IS_U8), _ld(base, rp, cm, valid, IS_U8),
                       _ld(base, rp, c0, valid, IS_U8), _ld(base, rp, cp, valid, IS_U8))
        r = x - med
    elif OP == OP_NPR:  # npr: x - x[2(i//2), 2(j//2)]
        r = x - _ld(base, _reflect(2 * (ii // 2), H) * sh, _reflect(2 * (jj // 2), W) * sw, valid, IS_U8)
    elif OP == OP_HIGHPASS:  # highpass: x - 0.25 * (up + down + left + right)
        nb = _ld(base, _reflect(ii - 1, H) * sh, c0, valid, IS_U8) + _ld(base, _reflect(ii + 1, H) * sh, c0, valid, IS_U8)
        nb += _ld(base, r0, _reflect(jj - 1, W) * sw, valid, IS_U8)
        nb += _ld(base, r0, _reflect(jj + 1, W) * sw, valid, IS_U8)
        r = x - 0.25 * nb
    else:  # none: the input is the residual
        r = x
    return tl.where(valid, r, 0.0)


@triton.jit
def _onehot_sum(v, rows, cols, p, a16):
    """[16, 16] M[a, b] = sum of v[i, j] over i % p == a, j % p == b (rows [TH], cols [TW] global)."""
    ry = tl.where((rows[None, :] % p) == a16[:, None], 1.0, 0.0)  # [16, TH]
    cx = tl.where((cols[:, None] % p) == a16[None, :], 1.0, 0.0)  # [TW, 16]
    t = tl.dot(ry, v, input_precision="ieee")  # [16, TW]
    return tl.dot(t, cx, input_precision="ieee")


@triton.jit
def fused_sums_kernel(
    x_ptr, sxb, sxc, sxh, sxw,        # x: [B, 3, H, W] uint8 | float32, any strides (elements)
    part_ptr,                         # [B, n_tiles, n_sums] float32 partial sums
    g_ptr, r_ptr,                     # [B, H, W], [B, 3, H, W] float32 contiguous (if wanted)
    d_ptr,                            # [8, 8] float32 orthonormal DCT-II matrix
    per_ptr, poff_ptr, n_periods,     # [n_periods] int32 periods and their offsets in the sums
    H, W, n_tw, n_tiles, n_sums, dct_off,
    k0, k1, k2, k3, k4,               # Gaussian taps (denoise)
    OP: tl.constexpr, IS_U8: tl.constexpr, WANT_G: tl.constexpr, WANT_R: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    i0 = (pid_t // n_tw) * TILE_H
    j0 = (pid_t % n_tw) * TILE_W
    rows = i0 + tl.arange(0, TILE_H)
    cols = j0 + tl.arange(0, TILE_W)
    ii = rows[:, None]
    jj = cols[None, :]
    valid = (ii < H) & (jj < W)
    xb = x_ptr + pid_b * sxb
    pb = part_ptr + (pid_b * n_tiles + pid_t) * n_sums

    ra = _residual(xb, ii, jj, H, W, sxh, sxw, valid, k0, k1, k2, k3, k4, OP, IS_U8)
    rb = _residual(xb + sxc, ii, jj, H, W, sxh, sxw, valid, k0, k1, k2, k3, k4, OP, IS_U8)
    rc = _residual(xb + 2 * sxc, ii, jj, H, W, sxh, sxw, valid, k0, k1, k2, k3, k4, OP, IS_U8)

    # moments and cross sums
    a2 = ra * ra
    b2 = rb * rb
    c2 = rc * rc
    tl.store(pb + OFF_S1 + 0, tl.sum(ra))
    tl.store(pb + OFF_S1 + 1, tl.sum(rb))
    tl.store(pb + OFF_S1 + 2, tl.sum(rc))
    tl.store(pb + OFF_S2 + 0, tl.sum(a2))
    tl.store(pb + OFF_S2 + 1, tl.sum(b2))
    tl.store(pb + OFF_S2 + 2, tl.sum(c2))
    tl.store(pb + OFF_S3 + 0, tl.sum(a2 * ra))
    tl.store(pb + OFF_S3 + 1, tl.sum(b2 * rb))
    tl.store(pb + OFF_S3 + 2, tl.sum(c2 * rc))
    tl.store(pb + OFF_S4 + 0, tl.sum(a2 * a2))
    tl.store(pb + OFF_S4 + 1, tl.sum(b2 * b2))
    tl.store(pb + OFF_S4 + 2, tl.sum(c2 * c2))
    tl.store(pb + OFF_X + 0, tl.sum(ra * rb))
    tl.store(pb + OFF_X + 1, tl.sum(ra * rc))
    tl.store(pb + OFF_X + 2, tl.sum(rb * rc))

    # phase energy sums, one period at a time (any p in 2..16)
    a16 = tl.arange(0, 16)
    e = (a2 + b2 + c2) / 3.0
    for k in range(n_periods):
        p = tl.load(per_ptr + k)
        off = tl.load(poff_ptr + k)
        ph = _onehot_sum(e, rows, cols, p, a16)
        pmask = (a16[:, None] < p) & (a16[None, :] < p)
        tl.store(pb + off + a16[:, None] * p + a16[None, :], ph, mask=pmask)

    # 8x8 block DCT of g on whole blocks: C = BD_H @ g @ BD_W^T, then sums of C^2 by (i % 8, j % 8)
    g = (ra + rb + rc) / 3.0
    whole = (ii // 8 < H // 8) & (jj // 8 < W // 8)
    gd = tl.where(whole, g, 0.0)
    uh = tl.arange(0, TILE_H)
    uw = tl.arange(0, TILE_W)
    bdh = tl.load(d_ptr + (uh[:, None] % 8) * 8 + uh[None, :] % 8)  # [TH, TH]: D[i % 8, k % 8]
    bdh = tl.where(uh[:, None] // 8 == uh[None, :] // 8, bdh, 0.0)
    bdwt = tl.load(d_ptr + (uw[None, :] % 8) * 8 + uw[:, None] % 8)  # [TW, TW]: D[j % 8, k % 8]
    bdwt = tl.where(uw[:, None] // 8 == uw[None, :] // 8, bdwt, 0.0)
    coef = tl.dot(tl.dot(bdh, gd, input_precision="ieee"), bdwt, input_precision="ieee")
    ds = _onehot_sum(coef * coef, uh, uw, 8, a16)
    dmask = (a16[:, None] < 8) & (a16[None, :] < 8)
    tl.store(pb + dct_off + a16[:, None] * 8 + a16[None, :], ds, mask=dmask)

    if WANT_G:
        tl.store(g_ptr + pid_b * H * W + ii * W + jj, g, mask=valid)
    if WANT_R:
        rbase = r_ptr + pid_b * 3 * H * W + ii * W + jj
        tl.store(rbase, ra, mask=valid)
        tl.store(rbase + H * W, rb, mask=valid)
        tl.store(rbase + 2 * H * W, rc, mask=valid)
