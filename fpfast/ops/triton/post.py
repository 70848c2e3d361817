"""The fused op's post-kernel stage in one Triton launch: partial sums -> feature vector.

One program per image reduces the float32 partial sums of the fused kernel ([B, n_part, n_sums],
cuda or triton backend) in float64, finalises moments, phase, DCT and cross-correlation exactly as
:func:`fpfast.ops.sums.finalize` does (float64 arithmetic; the logs in float32), and bins the
power of the gray residual's half spectrum (the library ``rfft2`` runs before it) into the radial
feature as :func:`fpfast.ops.sums.radial_features` does: it replaces ~40 small torch launches.
``finalize`` / ``radial_features`` stay the reference and the CPU path; tests compare the two.

Radial binning needs no atomics: the half-spectrum positions are pre-sorted by bin (a table made
once per size), so each bin is one contiguous segment summed in a fixed order (deterministic).
Plain pointer arithmetic and masks only (Triton 3.6 .. 3.9, compiled or interpreted).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ... import contract as C
from ...reference.features import FEATURE_EPS as _FEATURE_EPS, VAR_EPS as _VAR_EPS
from ...spec import FingerprintSpec
from ..sums import half_spectrum_bins, phase_counts

FEATURE_EPS = tl.constexpr(_FEATURE_EPS)
VAR_EPS = tl.constexpr(_VAR_EPS)
MOMENT_SUMS = tl.constexpr(C.MOMENT_SUMS)
DCT_COEFS = tl.constexpr(C.DCT_COEFS)
OFF_S1 = tl.constexpr(C.OFF_S1)
OFF_S2 = tl.constexpr(C.OFF_S2)
OFF_S3 = tl.constexpr(C.OFF_S3)
OFF_S4 = tl.constexpr(C.OFF_S4)
OFF_X = tl.constexpr(C.OFF_X)
NUM_WARPS = 4
RADIAL_BLOCK = 256  # spectrum positions per step of a bin's segment


@triton.jit
def _pick(s, idx, k):
    """s[k] of a register vector s (float64), as a scalar."""
    return tl.sum(tl.where(idx == k, s, 0.0), axis=0)


@triton.jit
def _moments(s, idx, c, n, o, HAS_MOM: tl.constexpr):
    """mean, var, skew, kurt of channel c from its raw sums (as sums.finalize); stores them at o + 4c."""
    s1 = _pick(s, idx, OFF_S1 + c)
    s2 = _pick(s, idx, OFF_S2 + c)
    s3 = _pick(s, idx, OFF_S3 + c)
    s4 = _pick(s, idx, OFF_S4 + c)
    mu = s1 / n
    m2 = s2 / n - mu * mu
    m3 = s3 / n - 3.0 * mu * s2 / n + 2.0 * (mu * mu * mu)
    m4 = s4 / n - 4.0 * mu * s3 / n + 6.0 * (mu * mu) * s2 / n - 3.0 * (mu * mu * mu * mu)
    var = tl.maximum(m2, 0.0)
    ok = var > VAR_EPS
    safe = tl.where(ok, var, 1.0)
    skew = tl.where(ok, m3 / (safe * tl.sqrt(safe)), 0.0)
    kurt = tl.where(ok, m4 / (safe * safe) - 3.0, 0.0)
    if HAS_MOM:
        tl.store(o + 4 * c + 0, mu.to(tl.float32))
        tl.store(o + 4 * c + 1, var.to(tl.float32))
        tl.store(o + 4 * c + 2, skew.to(tl.float32))
        tl.store(o + 4 * c + 3, kurt.to(tl.float32))
    return mu, var


@triton.jit
def _xcorr(s, idx, k, mu_i, mu_j, var_i, var_j, n):
    cov = _pick(s, idx, OFF_X + k) / n - mu_i * mu_j
    den = var_i * var_j
    dok = den > VAR_EPS * VAR_EPS
    v = tl.where(dok, cov / tl.sqrt(tl.where(dok, den, 1.0)), 0.0)
    return tl.minimum(tl.maximum(v, -1.0), 1.0).to(tl.float32)


@triton.jit
def post_kernel(
    part_ptr, n_part, n_sums,          # [B, n_part, n_sums] float32 partial sums, contiguous
    pcnt_ptr, n_phase, dct_off,        # [n_phase] float64 pixels per phase bin; DCT sums offset
    spec_ptr, n_spec, hw,              # [B, H, W//2+1, 2] float32 rfft2 of gray (view_as_real); H*W (float)
    perm_ptr, wt_ptr, seg_ptr, cnt_ptr, src_ptr, nbins,  # radial tables (see radial_tables)
    out_ptr, dim, n_pix, n_blocks,     # [B, dim] float32 feature vectors
    off_mom, off_phase, off_dct, off_rad, off_xc,
    NS: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr,
    HAS_MOM: tl.constexpr, HAS_PHASE: tl.constexpr, HAS_DCT: tl.constexpr,
    HAS_RAD: tl.constexpr, HAS_XC: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, NS)
    smask = idx < n_sums
    s = tl.zeros([NS], dtype=tl.float64)
    pb = part_ptr + b * n_part * n_sums
    for k in range(n_part):  # fixed order: deterministic
        s += tl.load(pb + k * n_sums + idx, mask=smask, other=0.0).to(tl.float64)
    o = out_ptr + b * dim
    n = n_pix  # an int: divisions by it promote to the float64 of the sums

    mu0, var0 = _moments(s, idx, 0, n, o + off_mom, HAS_MOM)
    mu1, var1 = _moments(s, idx, 1, n, o + off_mom, HAS_MOM)
    mu2, var2 = _moments(s, idx, 2, n, o + off_mom, HAS_MOM)
    if HAS_XC:
        tl.store(o + off_xc + 0, _xcorr(s, idx, 0, mu0, mu1, var0, var1, n))
        tl.store(o + off_xc + 1, _xcorr(s, idx, 1, mu0, mu2, var0, var2, n))
        tl.store(o + off_xc + 2, _xcorr(s, idx, 2, mu1, mu2, var1, var2, n))
    if HAS_PHASE:
        s2 = _pick(s, idx, OFF_S2 + 0) + _pick(s, idx, OFF_S2 + 1) + _pick(s, idx, OFF_S2 + 2)
        total = (s2 / 3.0) / n
        tsafe = tl.where(total > 0, total, 1.0)
        pm = (idx >= MOMENT_SUMS) & (idx < MOMENT_SUMS + n_phase)
        pc = tl.load(pcnt_ptr + (idx - MOMENT_SUMS), mask=pm, other=1.0)
        ph = tl.where(total > 0, (s / pc) / tsafe, 0.0)
        tl.store(o + off_phase + (idx - MOMENT_SUMS), ph.to(tl.float32), mask=pm)
    if HAS_DCT:
        dm = (idx >= dct_off) & (idx < dct_off + DCT_COEFS)
        e = (s / n_blocks + FEATURE_EPS).to(tl.float32)
        tl.store(o + off_dct + (idx - dct_off), tl.log(tl.where(dm, e, 1.0)), mask=dm)
    if HAS_RAD:
        kb = tl.arange(0, NB)
        acc = tl.zeros([NB], dtype=tl.float32)
        sp = spec_ptr + b * n_spec * 2
        for k in range(nbins):
            lo = tl.load(seg_ptr + k)
            hi = tl.load(seg_ptr + k + 1)
            part = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(lo, hi, BLOCK):
                offs = start + tl.arange(0, BLOCK)
                mm = offs < hi
                q = tl.load(perm_ptr + offs, mask=mm, other=0)
                wt = tl.load(wt_ptr + offs, mask=mm, other=0.0)
                re = tl.load(sp + 2 * q, mask=mm, other=0.0)
                im = tl.load(sp + 2 * q + 1, mask=mm, other=0.0)
                part += (re * re + im * im) / hw * wt  # as radial_features: power / (h*w), weighted
            acc = tl.where(kb == k, tl.sum(part, axis=0), acc)
        bm = kb < nbins
        cnt = tl.load(cnt_ptr + kb, mask=bm, other=1.0)
        means = acc / tl.maximum(cnt, 1.0)
        src = tl.load(src_ptr + kb, mask=bm, other=0)  # empty bins take the nearest lower non-empty one
        val = tl.sum(tl.where(src[:, None] == kb[None, :], means[None, :], 0.0), axis=1)
        tl.store(o + off_rad + kb, tl.log(val + FEATURE_EPS), mask=bm)


@functools.lru_cache(maxsize=64)
def radial_tables(h: int, w: int, nbins: int, device: torch.device):
    """(perm int32, weights float32, seg int32 [nbins+1], cnt float32 [nbins], src int32 [nbins]):
    the kept half-spectrum positions sorted by bin (stable), each bin a segment [seg[k], seg[k+1]).
    Made once per size and device (no copy per call, nothing to do under CUDA graph capture)."""
    keep, idx, wk, cnt = half_spectrum_bins(h, w, nbins, device)
    order = torch.argsort(idx, stable=True)
    seg = torch.zeros(nbins + 1, dtype=torch.int64, device=device)
    seg[1:] = torch.cumsum(torch.bincount(idx, minlength=nbins), 0)
    ar = torch.arange(nbins, device=device)
    src = torch.cummax(torch.where(cnt > 0, ar, torch.zeros_like(ar)), 0).values
    return (keep[order].to(torch.int32).contiguous(), wk[order].float().contiguous(),
            seg.to(torch.int32), cnt.float().contiguous(), src.to(torch.int32))


@functools.lru_cache(maxsize=64)
def _family_layout(spec: FingerprintSpec):
    sl = spec.slices
    return {f: (sl[f].start if f in sl else 0) for f in ("moments", "phase", "dct", "radial", "xcorr")}


def finalize_partials(partials: torch.Tensor, gray: torch.Tensor | None, h: int, w: int,
                      spec: FingerprintSpec) -> torch.Tensor:
    """Feature vectors [B, spec.dim] float32 of partial sums [B, n_part, n_sums] float32 (and the
    gray residual [B, H, W] float32 when the spec has the radial family): rfft2, then one launch."""
    b, n_part, ns = partials.shape
    if ns != C.n_sums(spec.periods):
        raise ValueError(f"partials have {ns} sums per row, the spec needs {C.n_sums(spec.periods)}")
    dev = partials.device
    out = torch.empty(b, spec.dim, dtype=torch.float32, device=dev)
    if b == 0:
        return out
    partials = partials.contiguous()
    has_rad = "radial" in spec.families
    if has_rad:
        if gray is None:
            raise ValueError("the spec has the radial family but no gray residual was given")
        spec_ri = torch.view_as_real(torch.fft.rfft2(gray.float()))  # [B, H, W//2+1, 2], contiguous
        perm, wts, seg, cnt, src = radial_tables(h, w, spec.radial_bins, dev)
        n_spec = h * (w // 2 + 1)
    else:  # never read (HAS_RAD is off)
        spec_ri = perm = wts = seg = cnt = src = partials
        n_spec = 0
    pcnt = _phase_counts(h, w, spec.periods, dev)
    lay = _family_layout(spec)
    fam = set(spec.families)
    post_kernel[(b,)](
        partials, n_part, ns,
        pcnt, C.phase_bins(spec.periods), C.dct_offset(spec.periods),
        spec_ri, n_spec, float(h * w),
        perm, wts, seg, cnt, src, spec.radial_bins,
        out, spec.dim, h * w, (h // C.DCT_BLOCK) * (w // C.DCT_BLOCK),
        lay["moments"], lay["phase"], lay["dct"], lay["radial"], lay["xcorr"],
        NS=triton.next_power_of_2(ns), NB=triton.next_power_of_2(spec.radial_bins), BLOCK=RADIAL_BLOCK,
        HAS_MOM="moments" in fam, HAS_PHASE="phase" in fam, HAS_DCT="dct" in fam, HAS_RAD=has_rad,
        HAS_XC="xcorr" in fam, num_warps=NUM_WARPS,
    )
    return out


@functools.lru_cache(maxsize=64)
def _phase_counts(h: int, w: int, periods: tuple, device) -> torch.Tensor:
    """Pixels per phase bin of every period, concatenated in spec order (float64)."""
    return torch.cat([phase_counts(h, w, p, device) for p in periods]).contiguous()
