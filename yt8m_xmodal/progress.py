"""Progress of long loops: a bar with ETA on a terminal, log lines elsewhere.

Training, embedding a data set, inference and the subset tool report their
progress through `Progress`. Reports are off by default, so the library is
silent when imported by other code; the commands (`yt8m_xmodal.cli`) call
`enable()`. Once enabled, a `Progress` draws

    train  42% [=========>            ] 252/600 steps  3.1 steps/s  ETA 1:52  loss 2.31

More: docs/design.md, "Progress reports".
"""

import logging
import os
import shutil
import sys
import time

from yt8m_xmodal import tfrecord
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")

# "off": no reports; "auto": a bar on a terminal, else log lines; "bar" and
# "log" force one of the two.
_MODES = ("off", "auto", "bar", "log")
_settings = {"mode": "off", "stream": None, "log_interval": 30.0}
# Open Progress objects, outermost first; only the last one draws.
_open = []
# A bar redraws at most this often (seconds): drawing costs more than a step
# of a small model.
_REDRAW_SECONDS = 0.1


def enable(mode="auto", stream=None, log_interval=30.0):
    """Turns progress reports on (the commands do; the library leaves them off).

    Args:
      mode: "auto" (a bar when `stream` is a terminal, else log lines),
        "bar", "log", or "off".
      stream: where bars are drawn (default: sys.stderr at drawing time).
      log_interval: seconds between log lines when not drawing a bar.
    """
    if mode not in _MODES:
        raise ValueError(f"progress mode {mode!r} is not one of "
                         f"{', '.join(_MODES)}")
    _settings.update(mode=mode, stream=stream, log_interval=log_interval)


def disable():
    """Turns progress reports off (the library default)."""
    enable("off")


def enabled():
    return _settings["mode"] != "off"


def _stream():
    return _settings["stream"] or sys.stderr


def _draws_bar():
    mode = _settings["mode"]
    if mode == "auto":
        isatty = getattr(_stream(), "isatty", None)
        return bool(isatty and isatty())
    return mode == "bar"


def format_seconds(seconds):
    """1:05 for 65 s, 1:01:05 for 3665 s."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def _number(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _value_text(values):
    return "  ".join(
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in values.items())


class Progress:
    """The progress of one loop; see the module docstring.

    Args:
      label: what is being done ("train", "embed", ...).
      total: units expected, or None when unknown (then no percentage or
        ETA). An estimate is fine: when the count passes it, the total is
        shown as unknown rather than above 100%.
      unit: the unit's name, singular ("step", "video", "file").
      initial: units already done (a resumed run), excluded from the rate.
    """

    def __init__(self, label, total=None, unit="", initial=0):
        self.label = label
        self.total = total
        self.unit = unit
        self.current = initial
        self.values = {}
        self._started = time.monotonic()
        self._first = None          # (time, count) of the first update
        self._last_draw = 0.0
        self._last_log = self._started
        self._closed = False
        self._bar = enabled() and _draws_bar()
        self._log = enabled() and not self._bar
        if self._bar or self._log:
            _open.append(self)

    # -- updates ----------------------------------------------------------------

    def update(self, current, **values):
        """Sets the count to `current`; `values` (e.g. loss=...) are shown."""
        self.current = current
        if self._first is None:
            # The rate counts from here: the first unit's time includes
            # start-up (tracing, opening files).
            self._first = (time.monotonic(), current)
        self.values.update(values)
        self._report()

    def advance(self, n=1, **values):
        """Adds `n` to the count."""
        self.update(self.current + n, **values)

    def set_total(self, total):
        """Changes the expected total (None: unknown)."""
        self.total = total
        self._report(force=True)

    def close(self):
        """Ends the report: the bar stays on screen as a finished line, or
        one final log line is written."""
        if self._closed:
            return
        self._closed = True
        if self in _open:
            _open.remove(self)
        elapsed = format_seconds(time.monotonic() - self._started)
        if self._bar:
            self._draw(final=True)
            _stream().write("\n")
            _stream().flush()
            outer = _active_bar()
            if outer is not None:
                outer._draw()
        elif self._log:
            log.info("%s: %s in %s", self.label, self._count_text(), elapsed)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            self.close()
        else:
            # The error is what matters: leave the terminal on a fresh line.
            close_all()

    # -- figures ----------------------------------------------------------------

    def rate(self):
        """Units per second since the first update, or None."""
        if self._first is None:
            return None
        start_time, start_count = self._first
        seconds = time.monotonic() - start_time
        if seconds <= 0 or self.current <= start_count:
            return None
        return (self.current - start_count) / seconds

    def eta(self):
        """Seconds left, or None when the total or the rate is unknown."""
        rate = self.rate()
        if not self._known_total() or not rate:
            return None
        return (self.total - self.current) / rate

    def _known_total(self):
        return self.total is not None and self.total >= self.current

    def _units(self, n=2):
        if not self.unit:
            return ""
        return " " + (self.unit if n == 1 else self.unit + "s")

    def _count_text(self):
        if self._known_total():
            return f"{self.current}/{self.total}{self._units(self.total)}"
        return f"{self.current}{self._units(self.current)}"

    def _parts(self):
        rate, eta = self.rate(), self.eta()
        parts = []
        if rate:
            unit = self.unit or "item"
            parts.append(f"{_number(rate)} {unit}s/s" if rate >= 1
                         else f"{_number(1 / rate)} s/{unit}")
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        if self.values:
            parts.append(_value_text(self.values))
        return parts

    # -- output -------------------------------------------------------------------

    def _report(self, force=False):
        now = time.monotonic()
        if self._bar:
            if force or now - self._last_draw >= _REDRAW_SECONDS:
                self._draw()
        elif self._log and (force or now - self._last_log
                            >= _settings["log_interval"]):
            self._last_log = now
            percent = (f" ({100 * self.current / self.total:.0f}%)"
                       if self._known_total() and self.total else "")
            log.info("%s: %s%s", self.label,
                     self._count_text() + percent,
                     "".join(", " + p for p in self._parts()))

    def _line(self, final=False):
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        if final:
            tail = [f"in {format_seconds(time.monotonic() - self._started)}"]
            tail += [_value_text(self.values)] if self.values else []
        else:
            tail = self._parts()
        head = self.label
        if self._known_total() and self.total:
            fraction = self.current / self.total
            size = 20
            filled = int(fraction * size)
            arrow = ">" if filled < size else ""
            head += (f" {100 * fraction:3.0f}% [" + "=" * filled + arrow
                     + " " * (size - filled - len(arrow)) + "]")
        line = "  ".join([f"{head} {self._count_text()}"] + tail)
        return line[:width]

    def _draw(self, final=False):
        if _open and _open[-1] is not self and not final:
            return  # an inner loop owns the line
        self._last_draw = time.monotonic()
        stream = _stream()
        stream.write("\r\033[K" + self._line(final))
        stream.flush()

    def _clear(self):
        stream = _stream()
        stream.write("\r\033[K")
        stream.flush()


def track(iterable, label, total=None, unit="", size=None):
    """Yields from `iterable`, reporting progress as it goes.

    Args:
      size: callable(item) -> units in that item (default 1 per item).
    """
    with Progress(label, total=total, unit=unit) as bar:
        for item in iterable:
            yield item
            bar.advance(1 if size is None else size(item))


def close_all():
    """Ends every open report (before an error message is printed)."""
    while _open:
        _open[-1].close()


def write_line(text, stream=None):
    """Writes a line of text, keeping clear of a bar drawn on that stream."""
    stream = stream or _stream()
    bar = _active_bar()
    same_stream = bar is not None and stream is _stream()
    if same_stream:
        bar._clear()
    print(text, file=stream, flush=True)
    if same_stream:
        bar._draw()


def _active_bar():
    return _open[-1] if _open and _open[-1]._bar else None


class LogHandler(logging.StreamHandler):
    """A stream handler that keeps log lines and a progress bar apart: it
    clears the bar's line, writes the record, then draws the bar again."""

    def emit(self, record):
        bar = _active_bar()
        same_stream = bar is not None and _stream() is self.stream
        if same_stream:
            bar._clear()
        super().emit(record)
        if same_stream:
            bar._draw()


# -----------------------------------------------------------------------------
# Totals

_counts = {}


def count_records(paths, time_limit=2.0):
    """Counts the records of TFRecord files by hopping over their framing.

    Meant for progress totals: reading the length headers is fast, but on
    remote file systems, compressed files or very large data sets it returns
    None rather than slow a run down.

    Args:
      paths: file paths, or a data pattern (comma-separated globs).
      time_limit: give up (None) after this many seconds.

    Returns:
      The number of records, or None when not known cheaply.
    """
    if isinstance(paths, str):
        if "://" in paths:
            return None
        from yt8m_xmodal import readers
        try:
            paths = readers.resolve_files(paths)
        except ValueError:
            return None
    deadline = time.monotonic() + time_limit
    total = 0
    for path in paths:
        try:
            stat = os.stat(path)
        except (OSError, TypeError):
            return None
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in _counts:
            count = _count_file(path, stat.st_size, deadline)
            if count is None:
                return None
            _counts[key] = count
        total += _counts[key]
    return total


def _count_file(path, size, deadline):
    count = 0
    with open(path, "rb") as f:
        try:
            for _ in tfrecord.iter_offsets(f, path, size):
                count += 1
                if count % 4096 == 0 and time.monotonic() > deadline:
                    return None
        except DataError:
            return None  # not plain TFRecord framing (or truncated)
    return count
