"""Resident memory after a Session has packed its weights: give back what packing left.

Users check memory with ``top`` (RSS), so a session should hold about what info() reports.
Two things stay resident after packing that no session uses:

- the model file's pages: a .jcm is memory-mapped, and packing reads every weight through
  the mapping, so those pages stay in the process's RSS beside the packed copies.
  ``madvise(MADV_DONTNEED)`` drops them; the mapping stays valid and a page read again
  (memory=low kernels computing from the file) comes back from the file.
- freed heap: packing allocates and frees large temporaries, and glibc keeps freed heap
  memory once its mmap threshold has grown; ``malloc_trim(0)`` hands it back.
- the compiler's code: LLVM (libllvmlite) leaves 50-70 MiB of its pages resident after
  Numba imports, compiles or loads cached kernels, and no kernel run touches them.
  ``release_compiler_pages`` pages them out after packing and again after a session's
  first run (ResNet-50 int8 .jcm, memory=low: 184 -> 117 MiB resident, 10 ms).
  The peak matters too (``/usr/bin/time``): a Session first loads one cached kernel with
  LLVM's pages dropped before and after (``warm_loader``: the first load in a process
  touches ~30 MiB more than later ones), and while it packs and during its first run a
  ``CompilerPageWatch`` drops them whenever RSS grew by 8 MiB, so they never sit beside
  all the weights at once (ResNet-50 peak RSS, 2 threads: int8 .jcm memory=low 168 ->
  129 MiB, fp16 .jcm low 191 -> 153, fp32 normal 262 -> 224; steady RSS unchanged).

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

import numpy as np

_libc = []


def settle(graph) -> None:
    """After a Session was prepared from ``graph``: release its mapped file pages and the
    compiler's, and trim the heap."""
    release_pages(graph)
    trim_heap()
    release_compiler_pages()


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


def release_arrays(arrays) -> int:
    """madvise(MADV_DONTNEED) the pages under these arrays where they view a file mapping
    (a constant a kernel has just packed for itself): the file's pages do not pile up
    beside the packed copies while a session packs. Returns how many were released."""
    done = 0
    for a in arrays:
        m = _mapping(a)
        if m is None or not isinstance(a, np.ndarray) or a.nbytes == 0:
            continue
        base = np.frombuffer(m, np.uint8).ctypes.data
        lo = a.ctypes.data - base
        start = lo - lo % mmap.PAGESIZE
        end = min(len(m), lo + a.nbytes)
        if 0 <= start < end:
            m.madvise(mmap.MADV_DONTNEED, start, end - start)
            done += 1
    return done


def file_backed(a) -> bool:
    """True when array ``a`` views a memory-mapped file (a loaded .jcm's constant)."""
    return _mapping(a) is not None


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


def _c_library():
    """glibc's functions jitconv calls (malloc_trim, madvise), or None off glibc."""
    if not _libc:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
                lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                lib.madvise.restype = ctypes.c_int
            except (OSError, AttributeError):
                lib = None
        _libc.append(lib)
    return _libc[0]


def trim_heap() -> bool:
    """glibc's malloc_trim(0); False where the C library has none (musl, macOS, Windows)."""
    lib = _c_library()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True


_COMPILER_LIBRARIES = ("libllvmlite",)


def _clean_library_mappings(prefixes):
    """(start, length) of the read-only mappings of the shared libraries whose file names
    start with ``prefixes`` that hold no anonymous (copied-on-write) page, from
    /proc/self/smaps; [] where unreadable."""
    found, cur = [], None
    try:
        with open("/proc/self/smaps") as f:
            for line in f:      # line by line: the file is megabytes
                parts = line.split()
                if parts and "-" in parts[0] and not parts[0].endswith(":"):
                    cur = None
                    if (len(parts) >= 6 and "w" not in parts[1]
                            and parts[5].rsplit("/", 1)[-1].startswith(prefixes)):
                        lo, hi = (int(v, 16) for v in parts[0].split("-"))
                        cur = (lo, hi - lo)
                elif cur is not None and parts[:1] == ["Anonymous:"]:
                    if parts[1] == "0":
                        found.append(cur)
                    cur = None
    except OSError:
        return []
    return found


def warm_loader() -> None:
    """Load one small cached kernel. The first kernel a process loads from Numba's cache
    touches ~30 MiB more of LLVM than later loads (0.13 s here): a Session does that
    before it packs any weight, so those pages are not resident beside the weights when
    the first run loads the rest (release_compiler_pages drops them after packing)."""
    from jitconv.kernels.elementwise import relu  # noqa: PLC0415
    one = np.zeros(1, np.float32)
    relu(one, one)


class CompilerPageWatch:
    """Called after each step of a session's first run: releases LLVM's pages
    (``release_compiler_pages``) whenever the process's RSS has grown by more than
    ``step`` bytes since the last release. Loading each op's cached kernels touches
    10-50 MiB of LLVM while the run also touches the weights and the arena; released
    only at the end, those pages add up to the process's peak (ResNet-50 int8 .jcm,
    memory=low: peak 168 -> 156 MiB, the same steady RSS)."""

    def __init__(self, step=8 * 2 ** 20):
        self.step, self.released = step, 0
        self.mark = rss_bytes()

    def __call__(self):
        if rss_bytes() - self.mark > self.step:
            release_compiler_pages()
            self.released += 1
            self.mark = rss_bytes()


def release_compiler_pages() -> int:
    """madvise(MADV_DONTNEED) over LLVM's code and read-only data (libllvmlite's
    mappings): returns the bytes of address space advised, 0 where unsupported.

    LLVM runs while Numba imports, compiles and loads cached kernels, and leaves 50-70 MiB
    of its shared library's pages resident; running compiled kernels never touches them.
    Only read-only mappings without a copied-on-write page are advised (relocated data
    keeps its pages), so every page dropped is the file's own content: LLVM reads it
    again from the file (the page cache, usually) if it runs later."""
    lib = _c_library()
    if lib is None or not hasattr(mmap, "MADV_DONTNEED"):
        return 0
    done = 0
    for lo, n in _clean_library_mappings(_COMPILER_LIBRARIES):
        if lib.madvise(lo, n, mmap.MADV_DONTNEED) == 0:
            done += n
    return done
