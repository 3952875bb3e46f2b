"""Errors the package raises for bad input.

Every error names what is wrong (the config field, the file or the record id)
so a user can fix it without reading a stack trace from inside tf.data.
"""

import re


class DataError(ValueError):
    """Bad input data: a corrupt shard, a wrong feature size, NaNs, empty sets."""


class ConfigError(ValueError):
    """A configuration value, or a combination of values, that cannot work.

    The message is a template whose `{field}` places name config fields; they
    are filled in as `field=value`. The command line renders the same error
    with its flag names (`--flag=value`) through `render`.

    Example:
    >>> str(ConfigError("{batch_size} must be >= 2", batch_size=1))
    'batch_size=1 must be >= 2'
    """

    def __init__(self, template, **values):
        self.template = template
        self.values = values
        super().__init__(self.render())

    def render(self, name=lambda field: field):
        """The message, with each field shown as `name(field)=value`."""
        shown = {}
        for field, value in self.values.items():
            if isinstance(value, bool):
                value = str(value).lower()
            # An empty value is a field not given: its name alone.
            shown[field] = (f"{name(field)}={value}" if value != ""
                            else name(field))
        # Only `{field}` places of known fields are filled, so other braces
        # in the text (a dict, a set) stay as they are.
        return re.sub(r"\{(\w+)\}",
                      lambda m: shown.get(m.group(1), m.group(0)),
                      self.template)
