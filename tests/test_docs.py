"""The Python blocks of docs/architecture.md run, in order, as written."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(path):
    """The ```python blocks of a markdown file, in order."""
    with open(path) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def clean_registries():
    """Whatever a page registers (ops, conv families, backends) is taken away after."""
    from jitconv.backends import conv_family, default_registry
    from jitconv.runtime import opdef
    families, backends = dict(conv_family.FAMILIES), set(default_registry.names())
    ops = set(opdef.OPDEFS)
    yield
    for op in set(opdef.OPDEFS) - ops:
        opdef.unregister(op)
    for key in set(conv_family.FAMILIES) - set(families):
        conv_family.unregister_conv_family(key)
    for name in set(default_registry.names()) - backends:
        default_registry.unregister_backend(name)


@pytest.mark.parametrize("page", ["docs/architecture.md"])
def test_every_python_block_runs(page, clean_registries, capsys):
    blocks = python_blocks(os.path.join(ROOT, page))
    assert blocks, f"{page} has no python blocks"
    namespace = {"__name__": "docs_example"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page} block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page}, python block {i + 1} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
