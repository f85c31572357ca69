"""User-facing errors: scripts print these as one line and exit non-zero (real bugs keep their traceback)."""


class UserError(Exception):
    """Bad input from the user (a flag, a config, a data file); shown as one line."""


class ConfigError(UserError):
    """A flag or config value that is unknown or out of range."""


class DataError(UserError):
    """A data file that is missing, unreadable or malformed."""
