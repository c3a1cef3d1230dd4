import importlib
import os
import zlib

import numpy as np
import pytest

if os.environ.get("JITCONV_REQUIRE_EXTRAS") == "1":
    # CI installs every test extra: there a missing onnx / onnxruntime / torch must fail
    # the run, not skip the tests that need it (.ci/run sets this)
    def _required(modname, minversion=None, reason=None, **kwargs):
        return importlib.import_module(modname)
    pytest.importorskip = _required


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: every rerun sees the same data."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
