"""Building, caching and loading the C libraries: keyed by the target instruction set, never
loaded from a directory others can write, and any failure means the PyTorch path."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from euclidnn import kernels
from euclidnn.kernels import build

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


def test_the_kernels_build_where_a_compiler_exists():
    if shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    assert kernels.conv.LIBRARY.get() is not None


def _copy(library, tmp_path, monkeypatch):
    monkeypatch.setenv("EUCLIDNN_CACHE", str(tmp_path / "cache"))
    return kernels.Library(
        library.source, library.what, library.functions, library.extra_flags, library.libs
    )


@needs_compiler
def test_cache_key_names_the_instruction_set(tmp_path, monkeypatch):
    """The target macros of -march=native enter the key: another CPU (other macros) builds its
    own library instead of reusing one it may not be able to run."""
    assert kernels.conv.LIBRARY.get() is not None
    assert _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch).get() is not None
    first = sorted(p.name for p in (tmp_path / "cache").glob("*.so"))
    assert len(first) == 1
    flags, macros = build.target_flags("cc")
    assert macros  # e.g. __x86_64__, __AVX2__ … or __aarch64__, __ARM_FEATURE_…
    other_cpu = lambda cc: (flags, macros + "#define __AN_OTHER_CPU__ 1\n")  # noqa: E731
    monkeypatch.setattr(build, "target_flags", other_cpu)
    assert _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch).get() is not None
    second = sorted(p.name for p in (tmp_path / "cache").glob("*.so"))
    assert len(second) == 2


@needs_compiler
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no POSIX permissions")
def test_no_library_is_loaded_from_a_directory_others_can_write(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    library = _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match="writable by others"):
        assert library.get() is None
    assert not list(cache.glob("*.so"))  # nothing was built there either
    cache.chmod(0o700)  # a built library that others may write is refused too
    library = _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch)
    assert library.get() is not None
    (built,) = cache.glob("*.so")
    built.chmod(0o777)
    with pytest.warns(UserWarning, match="writable by others"):
        assert _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch).get() is None


def test_without_a_compiler_the_pytorch_path_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")  # the fused path is asked for, and cannot build
    monkeypatch.setenv("CC", "no-such-compiler")
    from euclidnn.nn import continuous_filter_conv

    library = _copy(kernels.conv.LIBRARY, tmp_path, monkeypatch)
    monkeypatch.setattr(kernels.conv, "LIBRARY", library)
    x, w = torch.randn(3, 2), torch.randn(4, 2)
    src, dst = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 0])
    with pytest.warns(UserWarning, match="no C compiler"):
        out = continuous_filter_conv(x, w, src, dst, 3)
    want = torch.zeros(3, 2).index_add(0, dst, x[src] * w)
    torch.testing.assert_close(out, want)


def test_euclidnn_native_0_turns_every_kernel_off(monkeypatch):
    x = torch.randn(3, 2, dtype=torch.float64)
    monkeypatch.setenv("EUCLIDNN_NATIVE", "0")
    assert kernels.fused_library(kernels.conv.LIBRARY, x) is None
    monkeypatch.setenv("EUCLIDNN_NATIVE", "1")
    assert kernels.fused_library(kernels.conv.LIBRARY, x.half()) is None  # another dtype
    assert kernels.fused_library(kernels.conv.LIBRARY, x, x.float()) is None  # mixed dtypes
