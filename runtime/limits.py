"""Size checks before allocating from a user-given shape.

An input shape, a model file or an ONNX initializer can ask for more memory than the
machine has. NumPy would then raise a bare MemoryError (or, with overcommit, the kernel
would kill the process later); jitconv checks first and raises an OutOfMemoryError that
names what asked and how many bytes it needed.

The limit is what the machine can give now: MemAvailable + SwapFree from /proc/meminfo
on Linux, else the physical memory. ``JITCONV_MEMORY_LIMIT`` (bytes; a K/M/G/T suffix
is allowed, powers of 1024) sets it by hand, e.g. for a container whose cgroup allows less
than the host has, or in tests.
"""
from __future__ import annotations

import os

from jitconv.errors import OutOfMemoryError

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise OutOfMemoryError(f"JITCONV_MEMORY_LIMIT={text!r} is not a size in bytes "
                               f"(examples: 2000000000, 512M, 4G)")
    return int(value * _UNITS[unit])


def _meminfo() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        kb = int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB")
                                                          .split()[0])
        return kb * 1024
    except (OSError, KeyError, ValueError):
        return None


def available_bytes() -> tuple[int | None, str]:
    """(bytes jitconv may allocate now, where that figure comes from); None: unknown."""
    env = os.environ.get("JITCONV_MEMORY_LIMIT")
    if env:
        return _parse(env), "JITCONV_MEMORY_LIMIT"
    got = _meminfo()
    if got is not None:
        return got, "MemAvailable + SwapFree in /proc/meminfo"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def human(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def check_bytes(nbytes: int, what: str) -> None:
    """Raise OutOfMemoryError when ``nbytes`` (what ``what`` would allocate) cannot fit."""
    if nbytes <= 64 * 2**20 and not os.environ.get("JITCONV_MEMORY_LIMIT"):
        return                           # small: not worth reading /proc on every call
    limit, source = available_bytes()
    if limit is not None and nbytes > limit:
        raise OutOfMemoryError(f"{what} needs {nbytes:,} bytes ({human(nbytes)}), more than "
                               f"the {human(limit)} available ({source}); nothing was "
                               f"allocated")
