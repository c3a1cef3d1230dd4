"""Keep Numba's on-disk cache of the kernels consistent with their sources.

Numba keys a cached kernel on its own source file only. A kernel that calls a function
from another module (conv_tiled calls phase_planes.fill_pair, inlined at compile time)
keeps running the old compiled code after that other module changes: an in-place
upgrade of jitconv, or an edit in a checkout, can then give wrong answers with no sign.

So at import, jitconv stamps each cache folder its kernels use with a digest of all the
kernel sources; when the digest differs, the folder's cached kernels are deleted first
(only files named after jitconv's kernel modules) and Numba compiles them afresh. A folder
that cannot be written is left alone.
"""
from __future__ import annotations

import hashlib
import os
import sys

STAMP = "jitconv-kernels.stamp"
_HERE = os.path.dirname(os.path.abspath(__file__))


def sources_digest(folder: str = _HERE) -> str:
    """A digest of every .py file in the kernels package (name and content)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(folder, name), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:20]


def cache_folders() -> set:
    """The folders Numba caches jitconv's kernels in (from the loaded dispatchers)."""
    from numba.core.registry import CPUDispatcher
    folders = set()
    for name, mod in list(sys.modules.items()):
        if name.startswith("jitconv.kernels.") and mod is not None:
            for v in vars(mod).values():
                path = getattr(getattr(v, "_cache", None), "_cache_path", None)
                if isinstance(v, CPUDispatcher) and path:
                    folders.add(path)
    return folders


def drop_stale(folders=None, digest=None, modules=None) -> int:
    """Delete cached kernels written for other sources; returns how many files went."""
    folders = cache_folders() if folders is None else folders
    digest = digest or sources_digest()
    if modules is None:
        modules = tuple(n[:-3] + "." for n in os.listdir(_HERE) if n.endswith(".py"))
    removed = 0
    for folder in folders:
        stamp = os.path.join(folder, STAMP)
        try:
            with open(stamp) as f:
                if f.read().strip() == digest:
                    continue
        except OSError:
            pass
        try:
            os.makedirs(folder, exist_ok=True)     # a fresh install: stamp it empty
            for name in os.listdir(folder):
                if name.endswith((".nbi", ".nbc")) and name.startswith(modules):
                    os.remove(os.path.join(folder, name))
                    removed += 1
            tmp = f"{stamp}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(digest + "\n")
            os.replace(tmp, stamp)
        except OSError:       # not ours to write (a read-only install): Numba copes
            continue
    return removed
