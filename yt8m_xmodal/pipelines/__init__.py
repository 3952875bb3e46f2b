"""Apache Beam pipelines for full-scale YouTube-8M: the subset
(`pipelines.subset`) and batch embedding (`pipelines.embed`).

Both run on any Beam runner chosen by Beam's own flags (DirectRunner
locally, Dataflow, Flink, Spark); docs/full_scale.md has the commands.
Needs the `beam` extra (`pip install .[beam]`).
"""

import logging
import re
import sys

from yt8m_xmodal.errors import ConfigError, DataError

# Errors raised inside a transform reach the launcher wrapped by the runner
# (in multi-process mode as the worker's traceback text): the marker lets the
# entry point find the one line meant for the user.
_MARKER = "[yt8m_xmodal.pipelines] "
_MARKED = re.compile(re.escape(_MARKER) + r"(.*?)(?: \[while running [^\n]*)?$",
                     re.MULTILINE)


class PipelineInputError(DataError):
    """Bad input met inside a transform; the message carries the marker."""


# What a pipeline's --help says about the arguments that are not its flags.
_BEAM_FLAGS = ("Beam's own flags (--runner, --direct_num_workers, "
               "--direct_running_mode, --project, ...) pass through.")


def parse_config(config_class, argv, command, doc):
    """(config, Beam's arguments) of a pipeline's command line.

    The pipeline's own flags are generated from `config_class` by the same
    generator as the single-process commands' (`cli.parse_command_line`),
    so a pipeline and its tool take the same flags with the same defaults
    (--frame_features=false, --noframe_features, comma lists); the
    arguments left over are Beam's (--runner, --direct_num_workers, ...).
    --help prints the pipeline's flags.
    """
    from yt8m_xmodal import cli  # pylint: disable=g-import-not-at-top
    return cli.parse_command_line(config_class, argv, doc, program=command,
                                  others=_BEAM_FLAGS)


def flag_text(error):
    """An error's message with its fields shown as flags (`--field=value`):
    the pipelines' flags are named as the library's arguments."""
    if isinstance(error, ConfigError):
        return error.render(lambda field: f"--{field}")
    return str(error)


def marked(error):
    """The error to raise inside a transform for bad input `error`."""
    return PipelineInputError(_MARKER + flag_text(error))


def user_message(error):
    """The one line to show for an error a pipeline run raised, or None
    when it is not bad input (a bug, shown with its stack trace)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = _MARKED.search(str(error))
        if found:
            return found.group(1).strip()
        if isinstance(error, (ConfigError, DataError)):
            return flag_text(error)
        error = error.__cause__ or error.__context__
    return None


class _DropInputErrors(logging.Filter):
    """Drops the log records (with their stack traces) in which a runner
    reports a marked error: the entry point prints it as one line."""

    def filter(self, record):
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is not ours
            return True
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        return _MARKER not in text


class _QuietStream:
    """A stream that drops writes holding a marked error: a Beam SDK worker
    prints the traceback of a failed bundle to stderr besides logging it."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if _MARKER in text:
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def hide_logged_input_errors():
    """Keeps the runner's stack traces of marked errors out of the logs and
    stderr (in the launcher, and from the transforms' setup in runner
    workers): the entry point prints the error as one line."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropInputErrors) for f in handler.filters):
            handler.addFilter(_DropInputErrors())
    if not isinstance(sys.stderr, _QuietStream):
        sys.stderr = _QuietStream(sys.stderr)


def run_main(main, argv, command):
    """Runs `main(argv)`; bad input is printed as one line, exit status 2."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
    hide_logged_input_errors()
    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the runner wraps transform errors in its own
        message = user_message(e)
        if message is None:
            raise
        print(f"{command}: error: {message}", file=sys.__stderr__)
        return 2
