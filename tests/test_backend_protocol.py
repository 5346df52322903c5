"""Every backend exports every protocol kernel with the protocol's signature, and the docs
name no kernel that does not exist (``pydl/backend/protocol.py``)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from pydl.backend import protocol

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "architecture.md", ROOT / "docs" / "kernels.md"]


def _params(fn):
    """What a call sees of a signature: names, kinds and defaults (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def _backend_modules():
    """(label, module) of every module that implements the whole protocol."""
    out = [("cpu", "pydl.backend.cpu"), ("cpu.reference", "pydl.backend.cpu.reference"),
           ("cuda", "pydl.backend.cuda")]
    return [pytest.param(name, id=label) for label, name in out]


def test_protocol_lists_every_stub_once():
    assert len(protocol.KERNELS) == len(set(protocol.KERNELS)) == 25
    for name in protocol.KERNELS:
        assert protocol.stub(name).__doc__, f"{name} has no contract in its docstring"


@pytest.mark.parametrize("module_name", _backend_modules())
def test_backend_matches_protocol(module_name):
    # the CUDA backend imports without a GPU (and without CuPy: ensure_available says why)
    module = importlib.import_module(module_name)
    assert protocol.missing_kernels(module) == []
    for name in protocol.KERNELS:
        assert _params(getattr(module, name)) == _params(protocol.stub(name)), (
            f"{module_name}.{name}{inspect.signature(getattr(module, name))} differs from "
            f"the protocol's {name}{inspect.signature(protocol.stub(name))}")


def test_cpu_extension_wrappers_match_protocol():
    from pydl.backend import cpu

    if cpu.extension is None:
        pytest.skip("pydl._C is not built")
    for name in protocol.KERNELS:
        fn = getattr(cpu.extension, name, None)
        if fn is not None:  # the extension may leave a kernel to the reference
            assert _params(fn) == _params(protocol.stub(name)), name


def test_signature_check_can_fail():
    def matmul(a, b, trans_b=False, trans_a=False):
        pass

    assert _params(matmul) != _params(protocol.stub("matmul"))


# ----------------------------------------------------------------------------- docs
_SHORT = re.compile(r"[`.]([a-z0-9_]+_(?:forward|backward|backward_data|backward_weight|step))"
                    r"((?:/[a-z_]+)*)[`(]")
_CU_KERNEL = re.compile(r"`(?:pydl::)?([a-z0-9_]+_kernel)\b")


def _doc_kernel_names(text):
    """Protocol-style kernel names the text puts in code spans (``a_forward/backward`` too)."""
    names = set()
    for first, tail in _SHORT.findall(text):
        names.add(first)
        stem = re.sub(r"_(forward|backward|backward_data|backward_weight|step)$", "", first)
        for other in filter(None, tail.split("/")):
            names.add(f"{stem}_{other}")
    return names


def _cuda_kernel_definitions():
    text = "".join(p.read_text() for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    return set(re.findall(r"__global__[^{;]*?\b([a-z0-9_]+_kernel)\s*\(", text))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_existing_kernels(doc):
    text = doc.read_text()
    names = _doc_kernel_names(text)
    assert names, f"{doc.name} names no kernel: the pattern no longer matches the docs"
    assert sorted(names - set(protocol.KERNELS)) == []
    defined = _cuda_kernel_definitions()
    assert sorted(set(_CU_KERNEL.findall(text)) - defined) == []
    assert "backend/base.py" not in text, "the protocol lives in pydl/backend/protocol.py"


def test_doc_check_can_fail():
    assert _doc_kernel_names("`max_pool2d_forward/backward` and `cumsum_forward`") == {
        "max_pool2d_forward", "max_pool2d_backward", "cumsum_forward"}


def test_use_extension_switches_the_cpu_table():
    from pydl.backend import cpu

    was = cpu.extension_active()
    try:
        cpu.use_extension(False)
        assert not cpu.extension_active()
        assert all(cpu.implementations[k] is getattr(cpu.reference, k) for k in protocol.KERNELS)
        cpu.use_extension(True)
        if cpu.extension is not None:
            assert cpu.extension_active()
            assert cpu.implementations["conv2d_forward"] is cpu.extension.conv2d_forward
            assert cpu.implementations["matmul"] is cpu.reference.matmul  # BLAS already
    finally:
        cpu.use_extension(was)


def test_nn_imports_no_backend_module():
    """Layers compose ops; the Functions (pydl/functions) own the device code."""
    for path in (ROOT / "pydl" / "nn").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(\.\.backend|pydl\.backend)\b", text, re.M), (
            f"pydl/nn/{path.name} imports the backend")
        assert "backend_of(" not in text, f"pydl/nn/{path.name} calls backend_of"
        assert not re.search(r"^class \w+\((autograd\.)?Function\)", text, re.M), (
            f"pydl/nn/{path.name} defines a Function")
