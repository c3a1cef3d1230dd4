"""Row indices of the 6-D broadcast kernels (kernels/activations.py, kernels/binary_math.py).

Those kernels see every operand as a 6-D view of the output's shape and run a prange over
the rows of its first five axes, the last axis innermost; ``unravel5`` turns a flat row
number into the five indices. Inlined, so each kernel compiles it into its own loop.
"""
from numba import njit


@njit(inline="always")
def unravel5(r, d1, d2, d3, d4):
    """(i0, i1, i2, i3, i4) of row ``r`` over axes of sizes (d0, d1, d2, d3, d4), C order."""
    i4 = r % d4
    q3 = r // d4
    i3 = q3 % d3
    q2 = q3 // d3
    i2 = q2 % d2
    q1 = q2 // d2
    return q1 // d1, q1 % d1, i2, i3, i4
