"""The command line: flags, and errors as one line naming the flag.

The library takes typed configs (`yt8m_xmodal.config`) and raises
`ConfigError` naming config fields, or `DataError` naming files and records.
The commands here (train, eval, inference, ...) are the only code that knows
about flags: their flags are generated from the config dataclasses (so each
default and help text is written once), and `run` prints any library error
with the flag names a command-line user passed.
"""

import dataclasses
import logging
import os
import sys

from absl import app
from absl import flags

from yt8m_xmodal import config as config_lib
from yt8m_xmodal.errors import ConfigError, DataError


class FlagError(ValueError):
    """A command-line flag, or a combination of flags, that cannot work."""


# The absl definition of a flag whose default has this type (else a string).
_DEFINE_BY_TYPE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float}


def _flag_text(value):
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return value


def _calling_command():
    """The module name of the command defining flags through this module, so
    --help lists them as the command's own."""
    frame = sys._getframe(1)
    while frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals.get("__name__")


def define_config_flags(config_class, names=None):
    """Defines one absl flag per field of `config_class`.

    Args:
      config_class: a config dataclass; each field's `help` metadata is the
        flag's help and its default the flag's default. A field already
        defined as a flag (by an earlier config) is skipped.
      names: fields to define (default: all with help text).
    """
    for field in dataclasses.fields(config_class):
        if "help" not in field.metadata:
            continue
        if (names is not None and field.name not in names) or (
                field.name in flags.FLAGS):
            continue
        default = field.default
        kind = field.type if isinstance(field.type, type) else type(default)
        define = _DEFINE_BY_TYPE.get(kind, flags.DEFINE_string)
        define(field.name, _flag_text(default), field.metadata["help"],
               module_name=_calling_command())


def define_flag_table(table, flag_values=flags.FLAGS):
    """Defines a tool's flags from (name, default, help) rows on
    `flag_values`; the default's type gives the flag's (None: a string)."""
    # As absl names the module defining a flag: --help lists the main
    # module's (sys.argv[0]) flags.
    module = _calling_command()
    if module == "__main__":
        module = sys.argv[0]
    for name, default, help_text in table:
        define = _DEFINE_BY_TYPE.get(type(default), flags.DEFINE_string)
        define(name, default, help_text, flag_values=flag_values,
               module_name=module)


def set_flags(config_class):
    """{field: value} of the fields of `config_class` set on the command line.

    A flag left unset takes the recipe's value, not its shown default.
    """
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in flags.FLAGS and flags.FLAGS[field.name].present:
            values[field.name] = flags.FLAGS[field.name].value
    return values


def define_data_flags():
    """YT8M's reader flags: --frame_features, --feature_names, ..."""
    define_config_flags(config_lib.DataConfig)


def data_config_from_flags(default=None):
    """The DataConfig of the reader flags: those set override `default`."""
    values = set_flags(config_lib.DataConfig)
    if default is None:
        return config_lib.DataConfig(**values)
    return dataclasses.replace(default, **{"feature_names": (), **values})


def check_output_path(flag_name, path):
    """Fails early, naming the flag, when `path`'s directory does not exist."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FlagError(f"--{flag_name}={path}: directory {directory} does not "
                        "exist")


def flag_message(error):
    """A ConfigError's text with flag names (`--field=value`)."""
    if isinstance(error, ConfigError):
        return error.render(lambda field: f"--{field}")
    return str(error)


def run(main):
    """absl's app.run, with user errors as one line and no stack trace."""

    def guarded(argv):
        logging.basicConfig(format="%(message)s", level=logging.INFO)
        logging.getLogger("yt8m_xmodal").setLevel(logging.INFO)
        try:
            return main(argv)
        except (FlagError, ConfigError, DataError) as e:
            name = sys.argv[0].rsplit("/", 1)[-1]
            print(f"{name}: error: {flag_message(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    app.run(guarded)
