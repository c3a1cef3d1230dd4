"""Every code block of README.md and docs/*.md: python blocks run, in order, one namespace
per page, in a scratch folder; shell blocks carry the ``not-run`` marker and hold only
commands this repository has (tests/docs_blocks.py states the convention)."""
import glob
import importlib.util
import os
import tomllib

import pytest

from docs_blocks import NOT_RUN, ROOT, SHELL, blocks, commands, pages

PAGES = pages()
PYTHON_PAGES = [p for p in PAGES if any(b.lang == "python" for b in blocks(p))]


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


def test_the_pages_are_found():
    assert "README.md" in PAGES and "docs/architecture.md" in PAGES
    assert {"README.md", "docs/architecture.md"} <= set(PYTHON_PAGES)


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_every_python_block_runs(page, clean_registries, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)            # files a page writes (model.jcm, ...) land here
    namespace = {"__name__": "docs_example"}
    for b in blocks(page):
        if b.lang != "python":
            continue
        try:
            exec(compile(b.code, b.where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{b.where}: python block failed: "
                                 f"{type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_run_or_marked(page):
    for b in blocks(page):
        assert b.lang, f"{b.where}: a fence without a language (python, text or bash not-run)"
        if NOT_RUN in b.flags:
            assert b.lang in SHELL, (f"{b.where}: {NOT_RUN!r} is for shell blocks only; a "
                                     f"{b.lang} block must run")
        elif b.lang in SHELL:
            raise AssertionError(f"{b.where}: a shell block is not run by the tests; mark it "
                                 f"```{b.lang} {NOT_RUN}")
        elif b.lang.startswith("{"):       # a MyST directive for the site ({toctree}, ...)
            assert b.lang in ("{toctree}", "{eval-rst}"), f"{b.where}: directive {b.lang}?"
        else:
            assert b.lang in ("python", "text"), f"{b.where}: unknown block language {b.lang!r}"
        if b.lang == "text":
            first = b.code.lstrip().split("\n", 1)[0]
            assert not first.startswith(("import ", "from ", "$ ", "pip ", "jitconv ")), (
                f"{b.where}: a text block that looks like code: {first!r}")


def _extras():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


def _check_command(cmd, where):
    """Raise AssertionError unless ``cmd`` (a list of words) is a command this repository
    supports: its files exist, its extras are declared, its jitconv flags parse."""
    prog = os.path.basename(cmd[0])
    args = cmd[1:]
    if prog in ("python", "python3") and args[:1] == ["-m"]:
        mod = args[1]
        if mod == "venv":
            return
        if mod.startswith("jitconv"):
            assert importlib.util.find_spec(mod) is not None, f"{where}: no module {mod}"
            return
        assert mod in ("pytest", "pip"), f"{where}: python -m {mod}?"
        return
    if prog in ("python", "python3"):
        assert args and os.path.isfile(os.path.join(ROOT, args[0])), (
            f"{where}: no script {args[:1]}")
        return
    if prog == "pip":
        assert args[:1] == ["install"], f"{where}: pip {args[:1]}?"
        for a in args[1:]:
            if a.startswith(".[") or a.startswith("jitconv["):
                wanted = set(a[a.index("[") + 1:a.index("]")].split(","))
                assert wanted <= _extras(), f"{where}: unknown extra in {a}"
        return
    if prog == "jitconv":
        from jitconv.cli import build_parser
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"{where}: jitconv {' '.join(args)} does not parse") from exc
        return
    if prog == "jupyter":
        assert args[:1] == ["execute"], f"{where}: jupyter {args[:1]}?"
        for a in args[1:]:
            if not a.startswith("-"):
                assert glob.glob(os.path.join(ROOT, a)), f"{where}: no notebook {a}"
        return
    if prog in ("cd", "ls"):
        return
    if prog in ("asv", "sphinx-build") or cmd[0] == ".ci/run":
        return
    raise AssertionError(f"{where}: {' '.join(cmd)!r} is not an install or command-line "
                         f"line; run it in a python block instead")


@pytest.mark.parametrize("page", PAGES)
def test_shell_blocks_hold_only_known_commands(page):
    for b in blocks(page):
        if NOT_RUN in b.flags:
            cmds = commands(b.code)
            assert cmds, f"{b.where}: an empty shell block"
            for cmd in cmds:
                _check_command(cmd, b.where)


def test_the_checks_catch_a_wrong_block():
    """The convention is enforced: a bad flag, a missing script, an unknown extra."""
    for line in ("jitconv run model.onnx --no-such-flag", "python bench/no_such.py",
                 "pip install '.[no_such_extra]'", "rm -rf build"):
        with pytest.raises(AssertionError):
            for cmd in commands(line):
                _check_command(cmd, "example")
    _check_command(commands("jitconv run m.onnx --threads 2")[0], "example")
