"""The fenced code blocks of the markdown pages (README.md, docs/*.md), for tests/test_docs.py.

The convention the pages follow:

- every fence names its language;
- ```python blocks run, in page order, in one namespace per page;
- ```text blocks are output or diagrams, not code;
- ```{toctree} and ```{eval-rst} are MyST directives of the docs site (docs/conf.py);
- a shell block (bash, sh, console) is not run and says so in its info string:
  ```` ```bash not-run ````. The marker is allowed on shell blocks only, and such a block may
  hold only install / command-line lines (pip, venv, jitconv, python scripts, asv, sphinx):
  the test checks each of them against what the repository has.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RUN = "not-run"
SHELL = ("bash", "sh", "console", "shell")
_FENCE = re.compile(r"^(```+)([^\n`]*)\n(.*?)^\1[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: str        # path relative to the repository root
    line: int        # line of the opening fence (1-based)
    lang: str        # first word of the info string ("" when none)
    flags: tuple     # the other words of the info string
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list:
    """README.md and every docs/*.md, relative to the repository root."""
    found = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return ["README.md"] + found


def blocks(page: str) -> list:
    """The fenced blocks of one page, in order."""
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    out = []
    for m in _FENCE.finditer(text):
        words = m.group(2).split()
        out.append(Block(page, text.count("\n", 0, m.start()) + 1,
                         words[0] if words else "", tuple(words[1:]), m.group(3)))
    return out


def commands(code: str) -> list:
    """The commands of a shell block: comments dropped, ``&&`` chains split, leading
    ``NAME=value`` environment assignments removed; each command a list of words."""
    out = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        cmd = []
        for w in words + ["&&"]:
            if w in ("&&", "||", ";"):
                while cmd and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", cmd[0]):
                    cmd.pop(0)
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out
