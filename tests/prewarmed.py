"""Runs the project's commands as processes that start with TensorFlow
already imported.

Every command imports TensorFlow, which costs seconds of CPU each time; the
suite runs dozens. `run` asks one helper process per session (started on
first use, with the test process's environment) to import TensorFlow and
Keras once and fork a child per command. The child is the command's own
process: it runs the script (or `-m` module) as `__main__` from its own
working directory, with its own stdout, stderr and exit status, exactly as
`python script.py args...` would from that point on, in the environment
the test process has at the call; only the imports of TensorFlow and Keras
are inherited (the project's modules are imported in the child). Its Python
hash seed and the global NumPy RNG are the only other inherited state;
NumPy's is reseeded in the child.

`run` takes and returns what `subprocess.run(args, capture_output=True,
text=True, timeout=..., cwd=...)` does. It falls back to that call, a fresh
interpreter, for anything else than `sys.executable script.py ...` or
`sys.executable -m module ...`, when a variable that can change how
TensorFlow or Python starts (`_AT_IMPORT`) differs from the helper's, or
when the helper is not available. Tests of what a fresh interpreter prints
itself (TensorFlow's start-up log, the quiet console) call subprocess
directly, and so do those that pass their own environment.
"""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading

_lock = threading.Lock()
_helper = None  # (Popen, environment it started with), or False if broken
# Variables read when Python, TensorFlow or Keras start: a command whose
# environment differs from the helper's in one of these starts afresh.
_AT_IMPORT = ("TF_", "KERAS", "CUDA", "XLA", "OMP_", "MKL", "KMP_", "LD_",
              "PYTHON", "MALLOC", "TPU")


def _at_import(env):
    return {k: v for k, v in env.items() if k.startswith(_AT_IMPORT)}


def _start():
    global _helper
    env = dict(os.environ)
    try:
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
            cwd=os.path.dirname(os.path.abspath(__file__)))
        if process.stdout.readline().strip() != "ready":
            raise OSError("the helper did not start")
    except OSError:
        _helper = False
        return
    _helper = (process, env)
    atexit.register(_stop, process)


def _stop(process):
    if process.poll() is None:
        process.stdin.close()
        process.wait(timeout=60)


def _plain(args, cwd, timeout):
    return subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _eligible(args):
    args = [str(a) for a in args]
    if len(args) < 2 or args[0] != sys.executable:
        return False
    return args[1] == "-m" and len(args) > 2 or (
        args[1].endswith(".py") and os.path.isfile(args[1]))


def run(args, cwd=None, timeout=None):
    """`subprocess.run(args, capture_output=True, text=True, timeout=timeout,
    cwd=cwd)`, with TensorFlow imported before the command starts."""
    global _helper
    args = [str(a) for a in args]
    if not _eligible(args):
        return _plain(args, cwd, timeout)
    with _lock:
        if _helper is None:
            _start()
        if not _helper or _at_import(_helper[1]) != _at_import(os.environ):
            return _plain(args, cwd, timeout)
        process = _helper[0]
        with tempfile.TemporaryDirectory() as scratch:
            out, err = (os.path.join(scratch, n) for n in ("out", "err"))
            request = {"argv": args[1:], "cwd": os.path.abspath(cwd or "."),
                       "env": dict(os.environ), "timeout": timeout,
                       "out": out, "err": err}
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except OSError:
                line = ""
            if not line:  # the helper itself died: run afresh from now on
                _helper = False
                return _plain(args, cwd, timeout)
            answer = json.loads(line)
            stdout, stderr = (_text(path) for path in (out, err))
    if answer.get("timeout"):
        raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
    return subprocess.CompletedProcess(args, answer["code"], stdout, stderr)


def _text(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ""
    # As subprocess's text mode: the locale's encoding, universal newlines.
    import locale
    text = data.decode(locale.getpreferredencoding(False), errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- the helper process ---------------------------------------------------------


def _child(request):
    """In the forked child: become `python argv...` and never return."""
    import runpy
    import traceback
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["out"], os.O_WRONLY | os.O_CREAT),
                            (2, request["err"], os.O_WRONLY | os.O_CREAT)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    # Fresh standard streams on the new descriptors, as a new interpreter
    # opens them (stderr line-buffered). A library that kept the helper's
    # streams writes to the same descriptors; they are flushed at the end too.
    inherited = (sys.stdout, sys.stderr)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False,
                                       errors="backslashreplace")
    import numpy as np
    np.random.seed()
    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException as e:
        # The traceback a fresh interpreter prints: from the script's frames.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in (
                __file__, runpy.__file__, "<frozen runpy>"):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        code = 1
    # What the interpreter does on its way out: wait for threads, run the
    # atexit functions, flush.
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr, *inherited):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


def _serve():
    import signal
    import time
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    import tensorflow  # noqa: F401
    import keras  # noqa: F401
    protocol_in, protocol_out = sys.stdin, sys.stdout
    protocol_out.write("ready\n")
    protocol_out.flush()
    for line in protocol_in:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(1)
        deadline = (None if request["timeout"] is None
                    else time.monotonic() + request["timeout"])
        answer = None
        while answer is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                answer = {"code": os.waitstatus_to_exitcode(status)}
            elif deadline is not None and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                answer = {"timeout": True}
            else:
                time.sleep(0.02)
        protocol_out.write(json.dumps(answer) + "\n")
        protocol_out.flush()


if __name__ == "__main__":
    _serve()
