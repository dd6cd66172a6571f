"""Sphinx configuration for sb3_pathways."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from sb3_pathways.version import __version__

project = "sb3_pathways"
author = "sb3_pathways developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = ["_static"]

