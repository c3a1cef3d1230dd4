"""The repository layout (docs/architecture.md, "Layout"): kernels/, runtime/ and backends/
beside jitconv/ are jitconv.kernels, jitconv.runtime and jitconv.backends, installed or not."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_checkout_imports_without_an_install():
    """With the editable install's finder removed, `import jitconv` from the checkout still
    finds the kernels, runtime and backends folders (jitconv/__init__.py)."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if 'editable' not in str(getattr(f, '__module__', ''))]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks\n"
        "                     if 'editable' not in str(getattr(h, '__module__', ''))]\n"
        "sys.path_importer_cache.clear()\n"
        "sys.path = [p for p in sys.path if p not in ('', '.')]\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "import jitconv\n"
        "from jitconv.kernels import epilogue as e\n"
        "from jitconv.backends import conv_family as f\n"
        "print(e.__file__)\n"
        "print(f.__file__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", env={**os.environ, "JITCONV_PROGRESS": "0"}, timeout=300)
    assert out.returncode == 0, out.stderr
    files = out.stdout.split()
    assert files == [os.path.join(ROOT, "kernels", "epilogue.py"),
                     os.path.join(ROOT, "backends", "conv_family.py")]
