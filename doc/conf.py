"""Sphinx configuration for eo_baseline (stack package documentation layout, built with documenteer)."""

from documenteer.conf.pipelinespkg import *  # noqa: F403

project = "eo_baseline"
html_theme_options["logotext"] = project  # noqa: F405
html_title = project
html_short_title = project
