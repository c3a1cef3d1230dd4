"""Sphinx configuration of jitconv's docs site (pip install ".[docs]"; tests/test_docs_site.py
builds it with warnings as errors)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)       # import jitconv from this checkout when it is not installed

project = "jitconv"
author = "the jitconv authors"
release = "0.1.0"

extensions = [
    "myst_nb",                 # markdown pages (MyST) and the notebooks, with their outputs
    "sphinx.ext.autodoc",      # the API reference, from the docstrings
    "numpydoc",                # ... which are written in numpydoc style
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
myst_heading_anchors = 3
nb_execution_mode = "off"      # the notebooks are stored with outputs; CI executes them
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# a documented object without a docstring (GL08), or a docstring naming a parameter the
# signature does not have (PR02), is a warning, so an error under sphinx-build -W
numpydoc_validation_checks = {"GL08", "PR02"}
autodoc_member_order = "bysource"
html_theme = "alabaster"
suppress_warnings = ["misc.highlighting_failure"]
