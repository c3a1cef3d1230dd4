"""In CI (JITCONV_REQUIRE_EXTRAS=1, set by .ci/run) a missing extra fails the run instead
of skipping the tests that need it."""
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("required,want_rc", [("1", 2), ("", 5)])
def test_importorskip_fails_when_extras_are_required(tmp_path, required, want_rc):
    (tmp_path / "test_needs_extra.py").write_text(
        "import pytest\nmod = pytest.importorskip('jitconv_no_such_extra')\n"
        "def test_x():\n    pass\n")
    env = dict(os.environ, JITCONV_REQUIRE_EXTRAS=required,
               PYTHONPATH=os.path.dirname(__file__))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                        "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == want_rc, r.stdout + r.stderr   # 2: collection error; 5: all skipped
    assert ("jitconv_no_such_extra" in r.stdout) == bool(required)
    assert ("1 skipped" in r.stdout) != bool(required)
