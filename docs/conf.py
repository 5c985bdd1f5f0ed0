"""Sphinx configuration for the docs site (``make docs``: warnings are errors)."""

import atexit
import os
import shutil
import tempfile

# autodoc imports the provider, hence Airflow: give it a throwaway home, not ~/airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="voxsms-docs-airflow-")
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)

from airflow_provider_voxsms import __version__  # noqa: E402

project = "airflow-provider-voxsms"
author = "airflow-provider-voxsms contributors"
copyright = "the airflow-provider-voxsms contributors"
release = version = __version__

# Pages are Markdown (MyST) so that README sections are included, not copied; the API reference
# is autodoc, from the docstrings.
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
highlight_language = "none"  # untagged blocks are shell lines, not Python

# The pytest plugin's fixtures are documented without installing pytest into the docs venv.
autodoc_mock_imports = ["pytest"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autoclass_content = "class"

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path: list[str] = []
