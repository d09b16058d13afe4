"""Loads the harness's pytest plugin (:mod:`bench.harness.plugin`): options, hooks and fixtures."""

from bench.harness.plugin import *  # noqa: F403 (pytest reads the hooks and fixtures from here)
