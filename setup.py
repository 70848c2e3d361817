"""Builds fpfast._C (C++17 + OpenMP, pybind11) and, when nvcc is there, fpfast._C_cuda.

Environment:
  FPFAST_BUILD_CUDA=1  require the CUDA extension (fail when nvcc is missing)
  FPFAST_BUILD_CUDA=0  never build it
  (unset)              build it when nvcc is found on PATH or under CUDA_HOME
  FPFAST_MARCH         -march value for the C++ code (default x86-64-v3 on x86-64; never native
                       by default: a native build can crash on another CPU)
No hardware is probed and nothing is downloaded: the choice depends on the toolchain alone.
"""
import glob
import os
import platform
import shutil
import subprocess
import sys

import pybind11
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    if tomllib is None:
        return "0.1.0"
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def _find_nvcc():
    want = os.environ.get("FPFAST_BUILD_CUDA", "").strip()
    if want == "0":
        return None, "off (FPFAST_BUILD_CUDA=0)"
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        cand = os.path.join(home, "bin", "nvcc")
        nvcc = cand if os.path.exists(cand) else None
    if nvcc is None:
        if want == "1":
            sys.exit("FPFAST_BUILD_CUDA=1 but nvcc was not found on PATH or under CUDA_HOME")
        return None, "off (nvcc not found)"
    return nvcc, f"on ({nvcc})"


def _cuda_home(nvcc):
    real = os.path.realpath(nvcc)
    for cand in (os.environ.get("CUDA_HOME"), os.path.dirname(os.path.dirname(real)), "/usr/local/cuda"):
        if cand and os.path.exists(os.path.join(cand, "include", "cuda_runtime.h")):
            return cand
    sys.exit(f"found nvcc at {nvcc} but no CUDA headers beside it; set CUDA_HOME")


VERSION = _version()
NVCC, CUDA_STATE = _find_nvcc()
IS_X86 = platform.machine().lower() in ("x86_64", "amd64")
MARCH = os.environ.get("FPFAST_MARCH", "x86-64-v3" if IS_X86 else "")
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fvisibility=hidden", f'-DFPFAST_VERSION="{VERSION}"']
if MARCH:
    CXX_FLAGS.append(f"-march={MARCH}")
CUDA_ARCHS = os.environ.get("FPFAST_CUDA_ARCHS", "80;90").split(";")

cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
if NVCC and not cuda_sources:
    NVCC, CUDA_STATE = None, "off (no sources in csrc/cuda)"
ext_modules = [
    Extension(
        "fpfast._C",
        sources=cpu_sources,
        include_dirs=[pybind11.get_include(), "csrc"],
        extra_compile_args=CXX_FLAGS + (["-DFPFAST_WITH_CUDA"] if NVCC else []),
        extra_link_args=["-fopenmp"],
        language="c++",
    )
]

if NVCC:
    home = _cuda_home(NVCC)
    ext_modules.append(
        Extension(
            "fpfast._C_cuda",
            sources=sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp"))) + cuda_sources,
            include_dirs=[pybind11.get_include(), "csrc", os.path.join(home, "include")],
            library_dirs=[os.path.join(home, "lib64"), os.path.join(home, "lib")],
            # static cudart: importing the module needs no libcudart.so, and touches no GPU
            libraries=["cudart_static", "dl", "rt", "pthread"],
            extra_compile_args=CXX_FLAGS,
            language="c++",
        )
    )


class BuildExt(build_ext):
    """Compiles .cu sources with nvcc, everything else with the C++ compiler."""

    def build_extension(self, ext):
        cu = [s for s in ext.sources if s.endswith(".cu")]
        if cu:
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = list(ext.extra_objects or []) + self._nvcc(cu, ext)
        super().build_extension(ext)

    def _nvcc(self, sources, ext):
        objs = []
        gencode = []
        for a in CUDA_ARCHS:
            gencode += [f"-gencode=arch=compute_{a},code=sm_{a}"]
        gencode += [f"-gencode=arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}"]  # PTX for newer GPUs
        for src in sources:
            obj = os.path.join(self.build_temp, os.path.splitext(src)[0] + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            cmd = [NVCC, "-c", src, "-o", obj, "-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
                   "-Xcompiler", "-fPIC", "-Icsrc"] + gencode
            print("fpfast: " + " ".join(cmd))
            subprocess.check_call(cmd)
            objs.append(obj)
        return objs


print(f"fpfast build configuration: version {VERSION}; C++17 {' '.join(CXX_FLAGS[:1] + CXX_FLAGS[2:3])} "
      f"-march={MARCH or 'default'}; CUDA {CUDA_STATE}"
      + (f", archs {'/'.join('sm_' + a for a in CUDA_ARCHS)}" if NVCC else ""))

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
