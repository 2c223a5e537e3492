"""Sphinx configuration of the esmpy-hs documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (as ``.ci/run`` does).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

# exspy 0.3.2 imports deprecated HyperSpy paths when autodoc imports the signal classes
warnings.filterwarnings("ignore", message="Importing `Lazy")

import esmpy_hs  # noqa: E402

project = "esmpy-hs"
author = "esmpy-hs developers"
copyright = "esmpy-hs developers, GPL-3.0-or-later"
release = esmpy_hs.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"

# -- autodoc / numpydoc ----------------------------------------------------------------------
# The API pages (docs/api/*.rst) use automodule/autoclass with explicit member lists, so every
# object is documented once (esmpy_hs re-exports some names lazily; esmpy_hs.physics and
# esmpy_hs.datasets re-export their submodules' names through __all__). The package is imported
# for real (installed with its dependencies); nothing is mocked.
autodoc_typehints = "none"  # numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # autodoc's :members: lists them once
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# Not nitpicky: references to types of other libraries (numpy.ndarray, HyperSpy classes, ...)
# are not resolved without intersphinx, and intersphinx needs the network at build time.
nitpicky = False

# -- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"esmpy-hs {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}


# -- the CLI's help text, straight from the argument parser ---------------------------------
class CLIHelp(SphinxDirective):
    """``.. esmpy-cli-help:: decompose``: the output of ``esmpy-hs decompose --help``."""

    optional_arguments = 1

    def run(self):
        from esmpy_hs.cli import build_parser

        parser = build_parser()
        if self.arguments:
            subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
            parser = subparsers[self.arguments[0]]
        os.environ["COLUMNS"] = "92"
        text = parser.format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# -- narrow docstring fixes ----------------------------------------------------------------
# Docstrings of other modules that are valid text but not valid reStructuredText. Each entry is
# (object name, text, replacement); reported to the module's owner, remove once fixed there.
_DOCSTRING_FIXES = [
    # "|a|" is a reST substitution reference: "Undefined substitution referenced"
    ("esmpy_hs.metrics.spectral_angle", "(â = a/|a|)", r"(â = a/\|a\|)"),
]


def _fix_docstrings(app, what, name, obj, options, lines):
    for target, old, new in _DOCSTRING_FIXES:
        if name == target:
            lines[:] = [line.replace(old, new) for line in lines]


def setup(app):
    app.add_directive("esmpy-cli-help", CLIHelp)
    app.connect("autodoc-process-docstring", _fix_docstrings, priority=400)
    return {"parallel_read_safe": True}
