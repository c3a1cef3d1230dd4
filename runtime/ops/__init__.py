"""The built-in ops, one file per family; importing this package registers them all
(runtime/opdef.py imports it on first use)."""
from . import (conv, conv_transpose, elementwise, layout, linalg, loadtime,  # noqa: F401
               normalize, pool, resize)
