"""Loads the harness's pytest plugin (:mod:`bench.plugin`): options, hooks and fixtures."""

from bench.plugin import *  # noqa: F403 (pytest reads the hooks and fixtures from here)
