"""Without the docs extra, tests/test_docs_site.py skips with the reason, except in CI
(JITCONV_REQUIRE_EXTRAS=1, set by .ci/run), where the missing extra fails the run."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("required", ["1", ""])
def test_docs_site_without_sphinx(tmp_path, required):
    hidden = tmp_path / "sphinx"
    hidden.mkdir()           # a "sphinx" package that cannot be imported, first on the path
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError('sphinx hidden by the test', name='sphinx')\n")
    env = dict(os.environ, JITCONV_REQUIRE_EXTRAS=required,
               PYTHONPATH=os.pathsep.join([str(tmp_path), HERE]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        os.path.join(HERE, "test_docs_site.py")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = r.stdout + r.stderr
    if required:                # 2: a collection error; 5: nothing ran (the module skipped)
        assert r.returncode == 2 and "sphinx hidden by the test" in out, out
    else:
        assert r.returncode == 5 and "1 skipped" in out and 'pip install ".[docs]"' in out, out
