"""The one exception of tensornet.io (its own module so every part can raise it)."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, damaged, or does not fit what it is loaded into.

    The message always starts with the file's path."""
