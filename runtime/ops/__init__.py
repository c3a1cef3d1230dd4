"""The built-in ops, one file per family; importing this package registers them all
(runtime/opdef.py imports it on first use)."""
from . import (broadcast, conv, elementwise, layout, linalg, loadtime, normalize,  # noqa: F401
               pool, reduce, resize)
