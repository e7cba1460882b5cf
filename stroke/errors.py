"""Errors raised for bad user input: each names the file or key and what was expected."""


class DatasetError(ValueError):
    """A dataset on disk does not have the layout, labels or files the config describes."""


class ConfigError(ValueError):
    """A config value is outside what the framework accepts."""
