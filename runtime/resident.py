"""Resident memory after a Session has packed its weights: give back what packing left.

Users check memory with ``top`` (RSS), so a session should hold about what info() reports.
Two things stay resident after packing that no session uses:

- the model file's pages: a .jcm is memory-mapped, and packing reads every weight through
  the mapping, so those pages stay in the process's RSS beside the packed copies.
  ``madvise(MADV_DONTNEED)`` drops them; the mapping stays valid and a page read again
  (memory=low kernels computing from the file) comes back from the file.
- freed heap: packing allocates and frees large temporaries, and glibc keeps freed heap
  memory once its mmap threshold has grown; ``malloc_trim(0)`` hands it back.

ResNet-50, 2 threads, RSS after 6 runs over the RSS after ``import jitconv`` (info():
weights + arena + scratch): fp32 .jcm memory=normal 327 -> 221 MiB (161 MiB),
int8 .jcm memory=normal 285 -> 217 MiB (161), int8 .jcm memory=low 107 -> 85 MiB (34.5).
What is left is mostly Numba's compiled kernels and typing state, about 20-40 MiB a process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

_libc = []


def settle(graph) -> None:
    """After a Session was prepared from ``graph``: release its mapped file pages and trim
    the heap."""
    release_pages(graph)
    trim_heap()


def release_pages(graph) -> int:
    """madvise(MADV_DONTNEED) every file mapping behind ``graph``'s constants; returns how
    many there were (0 where madvise is missing, e.g. on Windows)."""
    seen = {}
    for c in graph.constants.values():
        for a in (c.data, getattr(c, "scale", None), getattr(c, "zero", None)):
            m = _mapping(a)
            if m is not None:
                seen[id(m)] = m
    for m in seen.values():
        m.madvise(mmap.MADV_DONTNEED)
    return len(seen)


def _mapping(a):
    """The mmap.mmap an array views, or None."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    for _ in range(8):
        if a is None or isinstance(a, mmap.mmap):
            return a
        a = a.obj if isinstance(a, memoryview) else getattr(a, "base", None)
    return None


def rss_bytes() -> int:
    """This process's resident set size now (what top shows), or 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


def trim_heap() -> bool:
    """glibc's malloc_trim(0); False where the C library has none (musl, macOS, Windows)."""
    if not _libc:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
            except (OSError, AttributeError):
                lib = None
        _libc.append(lib)
    if _libc[0] is None:
        return False
    _libc[0].malloc_trim(0)
    return True
