"""Processes that start in milliseconds: children of one forkserver that imported torch and Lightning once.

A fresh `python -m lit_regularize ...` spends ~7 s of CPU importing torch and Lightning before it does
anything, and the test machine has 2 cores. Tests whose subject is several processes at once (a lock or a
database shared between processes, folders claimed by processes started together, a sweep and the worker
processes it starts and stops) run the processes they start themselves as children of one `multiprocessing`
forkserver, started once per test session: each child is its own process (own pid, file locks, SQLite
connections, signals, exit status, stdout and stderr) running `python -m MODULE ...` or `python -c CODE ...`
as the interpreter would, without importing the world again. What only a fresh interpreter shows (its exit
on an uncaught exception or a signal, its stderr from the first import on, what it imports) stays with the
tests that start real `subprocess` processes.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

# imported once by the forkserver, so that its children start with them loaded
PRELOAD = ["procs", "lit_regularize.run", "lit_regularize.cli", "lit_regularize.cli.fit",
           "lit_regularize.cli.sweep", "lit_regularize.sweeps.workers"]
_CONTEXT = None
_STARTED: list = []  # every child of this session: one a failed test left running is killed at exit


def context():
    """The forkserver context (its server starts on the first child)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _child(args: Sequence[str], cwd: str, env: dict, out: str, err: str) -> None:
    """In the child: the working folder, environment and standard streams of a new process, then args as
    `python ARGS` runs them (-m MODULE or -c CODE)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.path.insert(0, cwd if args[0] == "-m" else "")  # as `python -m` / `python -c` do
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c":
            sys.argv = ["-c", *args[2:]]
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            raise ValueError(f"expected -m MODULE or -c CODE, got {args[0]!r}")
    finally:
        atexit._run_exitfuncs()  # what the interpreter runs at exit (multiprocessing's child exit skips it)
        sys.stdout.flush()
        sys.stderr.flush()


class Child:
    """A started child: the parts of subprocess.Popen the tests use (text stdout/stderr read at the end; with
    merge_stderr, stderr goes to stdout as with stderr=subprocess.STDOUT). Its output goes to files, not
    pipes, so grandchildren that keep them open (sweep workers) never block it."""

    def __init__(self, args: Sequence[str], cwd: Optional[str | Path] = None, env: Optional[dict] = None,
                 merge_stderr: bool = False) -> None:
        self.args = list(map(str, args))
        self._folder = tempfile.TemporaryDirectory(prefix="child-")  # removed with this object
        names = ("out",) if merge_stderr else ("out", "err")
        self._files = [os.path.join(self._folder.name, name) for name in names]
        for path in self._files:
            Path(path).touch()
        self._proc = context().Process(target=_child, args=(self.args, str(cwd or os.getcwd()),
                                                            dict(os.environ if env is None else env),
                                                            self._files[0], self._files[-1]))
        self._proc.start()
        _STARTED.append(self._proc)
        self.pid = self._proc.pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None and not self._proc.is_alive():
            self._proc.join()
            self.returncode = self._proc.exitcode  # -N: killed by signal N, as with Popen
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        self._proc.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout: Optional[float] = None) -> tuple[str, Optional[str]]:
        """Wait for the end; its stdout and stderr (None with merge_stderr)."""
        self.wait(timeout)
        texts = [Path(p).read_text(errors="replace") for p in self._files]
        return texts[0], texts[1] if len(texts) > 1 else None

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        if self.poll() is None:
            self._proc.kill()
            self._proc.join()
            self.poll()


@atexit.register
def _kill_leftovers() -> None:
    """Before multiprocessing's exit handler, which would wait for them."""
    for proc in _STARTED:
        if proc.is_alive():
            proc.kill()
            proc.join()


def start(args: Sequence[str], cwd: Optional[str | Path] = None, env: Optional[dict] = None,
          merge_stderr: bool = False) -> Child:
    """`python ARGS` (-m MODULE ... or -c CODE ...) as a forkserver child."""
    return Child(args, cwd, env, merge_stderr)
