"""The command line: flags, errors as one line naming the flag, a quiet console.

The library takes typed configs (`yt8m_xmodal.config`) and raises
`ConfigError` naming config fields, or `DataError` naming files and records.
The commands here (train, eval, inference, subset, synthetic) are the only
code that knows about flags: their flags are generated from the config
dataclasses (so each default and help text is written once; the pipelines
and benchmarks parse theirs with `parse_command_line`), and `run` prints
any library error with the flag names a command-line user passed.

The console shows the project's own lines (plain messages of the
"yt8m_xmodal" logger on stderr, results on stdout) and a progress bar, not
TensorFlow's start-up and runtime logs: importing this package sets
TF_CPP_MIN_LOG_LEVEL=3 and imports TensorFlow with its start-up messages
held back, unless the user set TF_CPP_MIN_LOG_LEVEL or passed
--verbosity / -v (0: info, 1: debug), which brings TensorFlow's logs back.
"""

import logging
import os
import sys
import tempfile
import types
import typing


def _requested_verbosity(argv):
    """The value of --verbosity / -v on the command line, or None.

    Read before absl parses flags: TensorFlow is imported (and logs) before.
    """
    value = None
    for i, arg in enumerate(argv[1:], 1):
        if arg == "--":
            break
        name, has_value, text = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name not in ("v", "verbosity"):
            continue
        if not has_value:
            text = argv[i + 1] if i + 1 < len(argv) else ""
        try:
            value = int(text)
        except ValueError:
            value = 0  # absl will refuse it; meanwhile show everything
    return value


def _quiet_console_wanted(argv=None, environ=None):
    """Hold TensorFlow's logs back unless the user asked for them."""
    environ = os.environ if environ is None else environ
    verbosity = _requested_verbosity(sys.argv if argv is None else argv)
    return "TF_CPP_MIN_LOG_LEVEL" not in environ and (
        verbosity is None or verbosity < 0)


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 sent to a scratch file.

    TensorFlow's C++ libraries log at load time (oneDNN, CUDA stubs, "All
    log messages before absl::InitializeLog()") before TF_CPP_MIN_LOG_LEVEL
    is read, so the level alone cannot hold those lines back. If the import
    fails, what it wrote is replayed to stderr with the error.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        import tensorflow  # noqa: F401  (no usable fd 2: import as is)
        return
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            scratch.seek(0)
            os.write(2, scratch.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# TensorFlow's CPU tensors come from malloc, and glibc maps every block of
# more than 32 MB (its largest mmap threshold; a frame-level batch is 300 MB)
# fresh from the kernel and unmaps it when freed, so each step page-faults
# gigabytes back in: a third of train.py's CPU went to the kernel
# (BENCHMARKS.md, "Demo command"). TensorFlow's BFC allocator keeps the
# blocks and reuses them. Read when TensorFlow creates its CPU allocator, so
# set before the import; a value the user set wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

QUIET = _quiet_console_wanted()
if QUIET:
    # 3: only FATAL. TensorFlow's C++ errors on a working run are noise
    # (cuInit on a machine without a GPU, oneDNN falling back for bools);
    # real failures reach Python as exceptions.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    _import_tensorflow_quietly()
    # Python-side TensorFlow INFO lines: "Assets written", "Sharding callback
    # duration", "Function `serve` contains input name(s)...".
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

# pylint: disable=wrong-import-position
import dataclasses  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from yt8m_xmodal import config as config_lib  # noqa: E402
from yt8m_xmodal import formats  # noqa: E402
from yt8m_xmodal import progress  # noqa: E402
from yt8m_xmodal import rundir
from yt8m_xmodal.errors import ConfigError, DataError  # noqa: E402


log = logging.getLogger("yt8m_xmodal")


class FlagError(ValueError):
    """A command-line flag, or a combination of flags, that cannot work."""


# The absl definition of a flag of each field type (else a string flag).
_DEFINE_BY_TYPE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, tuple: flags.DEFINE_list}


def _field_type(config_class, field):
    """(kind, element type) of a config field: `int | None` is int, and
    `tuple[int, ...]` is (tuple, int); a bare tuple holds strings."""
    kind = typing.get_type_hints(config_class)[field.name]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = args[0]
        args = list(typing.get_args(kind))
    if kind is tuple or typing.get_origin(kind) is tuple:
        return tuple, (args[0] if args else str)
    return kind, None


def _flag_default(value):
    return list(value) if isinstance(value, tuple) else value


def _calling_command():
    """The module name of the command defining flags through this module, so
    --help lists them as the command's own (absl names the main module by
    sys.argv[0])."""
    frame = sys._getframe(1)
    while frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    module = frame.f_globals.get("__name__")
    return sys.argv[0] if module == "__main__" else module


def define_config_flags(config_class, names=None, flag_values=flags.FLAGS,
                        module_name=None):
    """Defines one absl flag per field of `config_class`: the one flag
    generator of every command.

    Args:
      config_class: a config dataclass; each field's `help` metadata is the
        flag's help, its default the flag's default and its annotation the
        flag's type (`tuple[int, ...]` is a comma list, `int | None` an
        integer flag whose unset value None means "the model's value"). A
        field already defined as a flag (by an earlier config) is skipped.
      names: fields to define (default: all with help text).
      flag_values: where to define them (tests pass a fresh FlagValues).
      module_name: the name --help lists them under (default: the module
        of the command calling this).
    """
    module = module_name or _calling_command()
    for field in dataclasses.fields(config_class):
        if "help" not in field.metadata:
            continue
        if (names is not None and field.name not in names) or (
                field.name in flag_values):
            continue
        kind, _ = _field_type(config_class, field)
        define = _DEFINE_BY_TYPE.get(kind, flags.DEFINE_string)
        define(field.name, _flag_default(field.default), field.metadata["help"],
               flag_values=flag_values, module_name=module)


def _typed(config_class, field, value):
    """A flag's value as the field's type: comma lists become tuples of the
    element type (`--feature_sizes 1024,128` is (1024, 128))."""
    kind, element = _field_type(config_class, field)
    if kind is not tuple or value is None:
        return value
    items = value.split(",") if isinstance(value, str) else value
    items = [str(item).strip() for item in items if str(item).strip()]
    try:
        return tuple(element(item) for item in items)
    except ValueError:
        raise ConfigError(
            f"{{{field.name}}} must be a comma-separated list of "
            f"{element.__name__} values", **{field.name: ",".join(items)}
        ) from None


def set_flags(config_class, flag_values=flags.FLAGS):
    """{field: value} of the fields of `config_class` set on the command line,
    typed as the fields are.

    A flag left unset takes the recipe's (or the model's) value, not its
    shown default.
    """
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in flag_values and flag_values[field.name].present:
            values[field.name] = _typed(config_class, field,
                                        flag_values[field.name].value)
    return values


def config_from_flags(config_class, flag_values=flags.FLAGS, **values):
    """`config_class` built from every flag of its fields (unset ones at
    their defaults), typed; `values` override."""
    fields = {}
    for field in dataclasses.fields(config_class):
        if field.name in flag_values:
            fields[field.name] = _typed(config_class, field,
                                        flag_values[field.name].value)
    fields.update(values)
    return config_class(**fields)


_HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull")


def parse_command_line(config_class, argv=None, doc="", program=None,
                       others=""):
    """(config, other arguments) of a command line whose flags are the fields
    of `config_class`, for a program that does not run under `run` (the
    Beam pipelines, the benchmarks).

    The flags come from `define_config_flags` into a private FlagValues, so
    they take the commands' forms (--quick, --noquick, comma lists) and
    absl's global flags stay untouched. --help, -h, --helpshort or
    --helpfull prints the first paragraph of `doc` and the flags, then exits.

    Args:
      config_class: the config dataclass.
      argv: the arguments after the program's name (default sys.argv[1:]).
      doc: the program's docstring.
      program: its name in --help and errors (default: sys.argv[0]'s).
      others: "" refuses any argument that is not a flag of `config_class`;
        otherwise such arguments are returned, and `others` is what --help
        says about them (e.g. that Beam's own flags pass through).

    Returns:
      (the config, the other arguments: [] when `others` is "").

    Raises:
      ConfigError: an unknown or malformed flag, or a value the config
        refuses, named as the flag.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    program = program or os.path.basename(sys.argv[0])
    flag_values = flags.FlagValues()
    define_config_flags(config_class, flag_values=flag_values,
                        module_name=program)
    given = argv[:argv.index("--")] if "--" in argv else argv
    if any(a in _HELP_FLAGS for a in given):
        print(f"{program}: {doc.split(chr(10) * 2)[0].strip()}\n")
        print(flag_values.get_help())
        if others:
            print(f"\n{others}")
        raise SystemExit(0)
    try:
        rest = flag_values([program, *argv], known_only=bool(others))[1:]
    except flags.Error as e:
        raise ConfigError(str(e)) from None
    if rest and not others:
        raise ConfigError(f"unexpected argument {rest[0]!r}: {program} takes "
                          "only --flags (--help lists them)")
    return config_from_flags(config_class, flag_values), rest


def define_data_flags(flag_values=flags.FLAGS):
    """YT8M's reader flags: --frame_features, --feature_names, ..."""
    define_config_flags(config_lib.DataConfig, flag_values=flag_values)


def data_config_from_flags(default=None, flag_values=flags.FLAGS):
    """The DataConfig of the reader flags: those set override `default`."""
    values = set_flags(config_lib.DataConfig, flag_values)
    if default is None:
        return config_lib.DataConfig(**values)
    return dataclasses.replace(default, **{"feature_names": (), **values})


def detected_data_values(data_pattern, flag_name, flag_values=flags.FLAGS,
                         fields=None):
    """The data fields that the first record of `data_pattern` decides (the
    level; for the 2017 release the id key and class count), less those set
    on the command line and those not in `fields` (None: all); logged. Empty when the pattern matches nothing or
    its first record says nothing (the reader then reports it)."""
    set_data = set_flags(config_lib.DataConfig, flag_values)
    try:
        fmt = formats.detect_format(data_pattern)
    except DataError:
        return {}  # the reader names the pattern that matches nothing
    if fmt is None:
        return {}
    values = {k: v for k, v in formats.detected_data_values(fmt).items()
              if k not in set_data and (fields is None or k in fields)}
    if values:
        log.info("%s (--%s) holds %s, so it is read with %s (flags not "
                 "given)", fmt.path, flag_name, fmt.describe(),
                 " ".join(formats.flag_text(k, v) for k, v in values.items()))
    return values


def data_config_for_model(model_data, model_dir, data_pattern, flag_name,
                          flag_values=flags.FLAGS):
    """The DataConfig that eval.py and inference.py read records with: the
    model's (`model_data`), which the data flags given must agree with, as
    the starter code's eval.py takes them. --id_feature and --num_classes
    describe the records, so those given (or read from the first record of
    `data_pattern`) replace the model's.

    Raises:
      FlagError: one line naming the flag that disagrees with the model.
    """
    set_data = set_flags(config_lib.DataConfig, flag_values)
    given = dataclasses.replace(model_data, **set_data)
    for name in config_lib.DataConfig.MODEL_FIELDS:
        if name in set_data and getattr(given, name) != getattr(model_data,
                                                                name):
            raise FlagError(
                f"{formats.flag_text(name, getattr(given, name))} disagrees "
                f"with the model in {model_dir}, trained with "
                f"{formats.flag_text(name, getattr(model_data, name))} (its "
                f"{rundir.MODEL_FLAGS_FILE}); drop the flag or give "
                "records like the model's")
    described = {k: v for k, v in set_data.items()
                 if k not in config_lib.DataConfig.MODEL_FIELDS}
    described.update(detected_data_values(
        data_pattern, flag_name, flag_values,
        fields=("id_feature", "num_classes")))
    return dataclasses.replace(model_data, **described)


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


# Flags of the YouTube-8M starter code that users paste, with what to do
# instead: (name, default, what to use here).
STARTER_FLAGS = (
    ("num_readers", "", "the readers choose how many shards to read at once "
     "(tf.data autotuning); drop --num_readers"),
    ("label_loss", "", "this project learns retrieval, not classification: "
     "pick the objective with --loss (infonce, dcca, cluster_cca, soft_cca, "
     "triplet)"),
    ("regularization_penalty", "", "there is no classification loss to "
     "weigh; drop it (CCA losses take --cca_ridge)"),
    ("untar_model_dir", "", "--input_model_tgz is unpacked into a temporary "
     "directory and removed afterwards; drop --untar_model_dir"),
    ("num_gpu", "", "--distribution_strategy=mirrored uses every GPU of the "
     "machine"),
    ("segment_labels", False, "segment-level labels are not used: the towers "
     "learn from audio-video pairs; drop --segment_labels"),
    ("segment_label_ids_file", "", "segment-level labels are not used; drop "
     "--segment_label_ids_file"),
    ("segment_max_pred", "", "segment-level predictions are not made; "
     "inference.py writes top-K matches (--top_k)"),
    ("moe_num_mixtures", "", "--model picks this project's models (see "
     "--helpfull for their flags)"),
)


def define_starter_flags(flag_values=flags.FLAGS):
    """Defines the starter-code flags of `STARTER_FLAGS` so that they are
    refused with a one-line pointer (`run` checks them) rather than absl's
    "Unknown command line flag". They are listed under this module in
    --helpfull, not in a command's --help."""
    for name, default, instead in STARTER_FLAGS:
        if name in flag_values:
            continue
        define = (flags.DEFINE_bool if isinstance(default, bool)
                  else flags.DEFINE_string)
        define(name, default, f"YouTube-8M starter-code flag, not used here: "
               f"{instead}.", flag_values=flag_values, module_name=__name__)


def check_starter_flags(flag_values=flags.FLAGS):
    """Raises FlagError for the first starter-code flag set by the user."""
    for name, _, instead in STARTER_FLAGS:
        if name in flag_values and flag_values[name].present:
            raise FlagError(f"--{name} is a YouTube-8M starter-code flag with "
                            f"no use here: {instead}")


def top_k_flag_help(use):
    """The help text of --top_k, which has one form in every command."""
    return ("Comma-separated cut-offs K, e.g. 1,5,10,20 (one number is a "
            f"list of one). {use}")


def _adopt_command_flags(module_name):
    """Makes a command's flags key flags of the program that runs it, so
    --help lists them whether it runs as a root script, with python -m, or
    as a console script (absl lists the key flags of sys.argv[0])."""
    program = sys.argv[0]
    for name in {module_name, "__main__"}:
        for flag in flags.FLAGS.get_key_flags_for_module(name):
            flags.FLAGS.register_key_flag_for_module(program, flag)


class _PlainFormatter(logging.Formatter):
    """The message alone; warnings and errors say so."""

    def format(self, record):
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def configure_console(verbosity=None):
    """The commands' console: the project's plain log lines and progress.

    Args:
      verbosity: --verbosity as the user gave it (None: not given). Not
        given or below 0: TensorFlow's and absl's INFO lines are held back;
        0 or more shows them, 1 or more also the project's DEBUG lines.
    """
    logger = logging.getLogger("yt8m_xmodal")
    for handler in list(logger.handlers):
        if isinstance(handler, progress.LogHandler):
            logger.removeHandler(handler)
    handler = progress.LogHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    logger.addHandler(handler)
    verbose = verbosity is not None and verbosity >= 0
    logger.setLevel(logging.DEBUG if verbose and verbosity >= 1
                    else logging.INFO)
    # Not through absl's handler too: one style, each line once.
    logger.propagate = False
    if not verbose and flags.FLAGS.is_parsed():
        # absl raises an unset --verbosity to INFO after parsing; WARNING
        # keeps absl.logging.info calls inside TensorFlow ("Sharding callback
        # duration", "Function `serve` contains input name(s)...") quiet. A
        # level on the "absl" logger would not do: TensorFlow sets and
        # restores absl's verbosity while saving models.
        flags.FLAGS.verbosity = -1
    logging.getLogger("tensorflow").setLevel(
        logging.NOTSET if verbose else logging.ERROR)
    progress.enable("auto")


def run(main):
    """absl's app.run, with user errors as one line and no stack trace.

    Also: --help lists the command's flags however it is run; the console
    keeps to the project's lines and progress (see `configure_console`).
    """
    define_starter_flags()
    command = getattr(main, "__module__", "__main__")
    _adopt_command_flags(command)
    program = sys.modules.get("__main__")
    if program is not None and not program.__doc__:
        # A console script's wrapper has no docstring for --help to show.
        program.__doc__ = getattr(sys.modules.get(command), "__doc__", None)

    def guarded(argv):
        verbosity = flags.FLAGS["verbosity"]
        configure_console(verbosity.value if verbosity.present else None)
        try:
            check_starter_flags()
            return main(argv)
        except (FlagError, ConfigError, DataError) as e:
            progress.close_all()
            name = sys.argv[0].rsplit("/", 1)[-1]
            print(f"{name}: error: {flag_message(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            progress.close_all()
            return 130
        except BaseException:
            progress.close_all()
            raise

    app.run(guarded)
