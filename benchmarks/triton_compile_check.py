"""Compile every Triton kernel of fpfast for sm_80 and sm_90 on a machine without a GPU.

The CPU suite runs the kernels under TRITON_INTERPRET=1, which never lowers them; this lowers them
to PTX/cubin (ptxas ships with the triton wheel), so a construct the compiler rejects (a float64
op, a loop bound, a constexpr global) shows up before a GPU run.
    TRITON_INTERPRET=0 python benchmarks/triton_compile_check.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # also run as a file
os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from fpfast import contract as C  # noqa: E402
from fpfast.ops.triton.kernels import fused_sums_kernel  # noqa: E402
from fpfast.ops.triton.post import post_kernel  # noqa: E402

POST_SIG = {"part_ptr": "*fp32", "n_part": "i32", "n_sums": "i32", "pcnt_ptr": "*fp64", "n_phase": "i32",
            "dct_off": "i32", "spec_ptr": "*fp32", "n_spec": "i32", "hw": "fp32", "perm_ptr": "*i32",
            "wt_ptr": "*fp32", "seg_ptr": "*i32", "cnt_ptr": "*fp32", "src_ptr": "*i32", "nbins": "i32",
            "out_ptr": "*fp32", "dim": "i32", "n_pix": "i32", "n_blocks": "i32", "off_mom": "i32",
            "off_phase": "i32", "off_dct": "i32", "off_rad": "i32", "off_xc": "i32"}
SUMS_SIG = {"x_ptr": "*u8", "sxb": "i32", "sxc": "i32", "sxh": "i32", "sxw": "i32", "part_ptr": "*fp32",
            "g_ptr": "*fp32", "r_ptr": "*fp32", "d_ptr": "*fp32", "per_ptr": "*i32", "poff_ptr": "*i32",
            "n_periods": "i32", "H": "i32", "W": "i32", "n_tw": "i32", "n_tiles": "i32", "n_sums": "i32",
            "dct_off": "i32", "k0": "fp32", "k1": "fp32", "k2": "fp32", "k3": "fp32", "k4": "fp32"}


def compile_one(fn, sig, consts, cap):
    s = dict(sig)
    s.update({k: "constexpr" for k in consts})
    k = triton.compile(ASTSource(fn=fn, signature=s, constexprs=consts), target=GPUTarget("cuda", cap, 32),
                       options={"num_warps": 4})
    return k.metadata


def main():
    for cap in (80, 90):
        for rad in (True, False):
            md = compile_one(post_kernel, POST_SIG, dict(NS=256, NB=16, BLOCK=256, HAS_MOM=True, HAS_PHASE=True,
                                                         HAS_DCT=True, HAS_RAD=rad, HAS_XC=True), cap)
            print(f"sm_{cap} post_kernel HAS_RAD={rad}: ok (shared {md.shared} B)")
        for op in C.RESIDUAL_OPS:
            sig = dict(SUMS_SIG, x_ptr="*fp32" if op == "none" else "*u8")
            md = compile_one(fused_sums_kernel, sig, dict(OP=C.OP_CODES[op], IS_U8=op != "none", WANT_G=True,
                                                          WANT_R=True, TILE_H=32, TILE_W=32), cap)
            print(f"sm_{cap} fused_sums_kernel {op}: ok (shared {md.shared} B)")


if __name__ == "__main__":
    main()
