"""Errors the package raises for bad input.

Every error names what is wrong (the flag, the file or the record id) so a user
can fix it without reading a stack trace from inside tf.data.
"""


class DataError(ValueError):
    """Bad input data: a corrupt shard, a wrong feature size, NaNs, empty sets."""


class FlagError(ValueError):
    """A command-line flag, or a combination of flags, that cannot work."""
