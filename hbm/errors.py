"""Exception hierarchy: every message names the file, the place in it and what was expected."""

from __future__ import annotations


class HBMError(Exception):
    """Base class of every error hbm raises on bad input or a failed step."""


class PriorsError(HBMError):
    """A priors file is missing, unreadable or violates the priors schema."""


class DiaryError(HBMError):
    """A diary file is missing, unreadable or violates the diary format."""


class FitError(HBMError):
    """A model cannot be built or fitted with the given configuration."""


class RunError(HBMError):
    """A run folder is missing a file or holds files that do not agree."""


class ConfigError(HBMError):
    """A run configuration file is missing, unreadable or holds an unknown key or a wrong type."""
