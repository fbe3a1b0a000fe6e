"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class CnnlabError(Exception):
    """A problem with the user's input: config, path, data or checkpoint."""


class ConfigError(CnnlabError):
    """A config key or value is unknown, mistyped or out of range."""


class DataError(CnnlabError):
    """A dataset is missing, unreadable or inconsistent."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupt or does not fit the model."""
