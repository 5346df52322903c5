"""Build script: the pybind11 extension ``pydl._C`` and the CUDA sources as package data.

``pip install .`` compiles every ``csrc/cpu/*.cc`` into ``pydl._C`` (C++17, -O3, OpenMP).
If the compiler fails, the install still succeeds and pydl runs on its NumPy reference
kernels (``python -m pydl info`` says which is active); set ``PYDL_REQUIRE_EXT=1`` to make a
failed build an error instead.

The CUDA kernels in ``csrc/cuda`` are not compiled here: they are copied into the package
(``pydl/kernels``) and compiled at run time by NVRTC, so installing needs no CUDA toolkit.
"""

import glob
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithKernels(build_py):
    """Copy csrc/cuda/*.cu and *.cuh into pydl/kernels of the build tree."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "pydl", "kernels")
        os.makedirs(target, exist_ok=True)
        for src in glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu*")):
            shutil.copy2(src, target)


class OptionalBuildExt(build_ext):
    """Build the C++ extension, but let pydl install without it if compilation fails."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            if os.environ.get("PYDL_REQUIRE_EXT") == "1":
                raise
            sys.stderr.write(
                f"\nWARNING: building {ext.name} failed ({exc}); pydl will use its NumPy "
                "reference kernels. Set PYDL_REQUIRE_EXT=1 to make this an error.\n\n"
            )


def extensions():
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:
        sys.stderr.write("WARNING: pybind11 not found; building pydl without pydl._C\n")
        return []
    sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cc")))
    if not sources:
        return []
    compile_args = ["-O3", "-fopenmp"]
    if os.environ.get("PYDL_NATIVE", "0") == "1":
        compile_args.append("-march=native")
    return [
        Pybind11Extension(
            "pydl._C",
            sources,
            include_dirs=[os.path.join("csrc", "cpu")],
            cxx_std=17,
            extra_compile_args=compile_args,
            extra_link_args=["-fopenmp"],
        )
    ]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithKernels},
)
