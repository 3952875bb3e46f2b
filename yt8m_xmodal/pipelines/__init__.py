"""Apache Beam pipelines for full-scale YouTube-8M: the subset
(`pipelines.subset`) and batch embedding (`pipelines.embed`).

Both run on any Beam runner chosen by Beam's own flags (DirectRunner
locally, Dataflow, Flink, Spark); docs/full_scale.md has the commands.
Needs the `beam` extra (`pip install .[beam]`).
"""

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


def run_main(main, argv, command):
    """Runs `main(argv)`; bad input is printed as one line, exit status 2."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the runner wraps transform errors in its own
        message = user_message(e)
        if message is None:
            raise
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
