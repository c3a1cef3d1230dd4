"""Parallel work called through function addresses, so a kernel compiles once per variant.

Why: when an @njit function calls another, Numba links the callee's LLVM module into the
caller's, then optimizes and emits machine code for the whole linked module again. A conv
worker's unrolled tiles were so optimized about five times on the way up (worker, prange
body, its wrappers, driver): conv_blocked's parallel wrapper alone took 10 s of ResNet-50's
32 s cold start, and every tile width x path x weight kind was compiled into one worker,
needed or not. Here a kernel's parallel region calls its worker through an address
instead, so the worker is compiled once, and only the variants a model runs.

- A *job function* is an @njit function ``job(args_addr, thread)`` (both int64): it reads
  its parameters from an int64 block at ``args_addr`` (array addresses and sizes, ints,
  the address of a float32 block for floats) and takes its share of the work, usually from
  a shared counter (kernels/atomics.py). ``job_address`` compiles it (or loads it from the
  disk cache) and returns the address of its C wrapper.
- ``run_jobs(fns, args, nthreads)``: one parallel region in which every thread calls each
  job function of ``fns`` in turn, with row k of ``args`` (no barrier between them: a
  thread done with job function 0's work goes on to job function 1's). It is compiled
  once for all kernels.
- The ``*_at`` helpers view an address as a typed array inside a job function (no copy, no
  ownership: the caller keeps the arrays alive during ``run_jobs``).

A job function must not raise: its C wrapper cannot pass an exception on. Kernels check
their arguments before the parallel region.

Variants are closures made by a factory over plain ints (Numba caches a closure per value
of what it captures, and prunes branches on those ints, so each variant types and compiles
only its own path). Capturing a dispatcher instead would break the cache key.
"""
import numpy as np
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.extending import intrinsic

JOB_SIG = (types.int64, types.int64)


@intrinsic
def call_job(typingctx, fn, args_addr, thread):
    """Call the job function at address ``fn`` with (args_addr, thread)."""
    sig = types.void(types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(ir.VoidType(), [i64, i64])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2]])
        return context.get_dummy_value()

    return sig, codegen


def _pointer_intrinsic(nbtype):
    @intrinsic
    def pointer(typingctx, addr):
        sig = types.CPointer(nbtype)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(nbtype).as_pointer())

        return sig, codegen
    return pointer


_ptr_f32 = _pointer_intrinsic(types.float32)
_ptr_i64 = _pointer_intrinsic(types.int64)
_ptr_u8 = _pointer_intrinsic(types.uint8)


@njit(inline="always")
def f32_at(addr, n):
    """A (n,) float32 view of the memory at ``addr``."""
    return carray(_ptr_f32(addr), n)


@njit(inline="always")
def i64_at(addr, n):
    """A (n,) int64 view of the memory at ``addr``."""
    return carray(_ptr_i64(addr), n)


@njit(inline="always")
def u8_at(addr, n):
    """A (n,) uint8 view of the memory at ``addr`` (bytes)."""
    return carray(_ptr_u8(addr), n)


@njit(inline="always")
def f32_2d_at(addr, n0, n1):
    """A (n0, n1) float32 view of the memory at ``addr``."""
    return carray(_ptr_f32(addr), (n0, n1))


@njit(parallel=True, cache=True)
def run_jobs(fns, args, nthreads):
    """Every thread t < nthreads calls fns[k](address of args[k], t) for each k in turn."""
    base = np.int64(args.ctypes.data)
    row = args.shape[1] * 8
    for t in prange(nthreads):
        for k in range(fns.shape[0]):
            call_job(fns[k], base + k * row, t)


def job_address(job):
    """The address of job function ``job``'s C wrapper, compiling it (or loading it from
    Numba's cache) the first time. The address is valid while ``job`` lives: callers keep
    both."""
    job.compile(JOB_SIG)
    cres = job.overloads[JOB_SIG]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_cfunc_wrapper_name)
