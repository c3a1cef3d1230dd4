"""The built-in ops, one file per family; importing this package registers them all
(runtime/opdef.py imports it on first use)."""
from . import (blocked, broadcast, conv, conv_transpose, elementwise, layout,  # noqa: F401
               linalg, loadtime, normalize, pool, quant, reduce, resize)
