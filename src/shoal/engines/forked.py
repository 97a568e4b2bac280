"""Workers forked from the coordinator instead of started as fresh interpreters.

A fresh interpreter spends a quarter of a second of CPU starting Python and importing shoal and
what a worker needs before it even imports the project, and on a small machine that CPU is taken
from the coordinator and the other workers starting beside it. A child forked from the
coordinator has all that already, and shares those pages with it.

Forking is used only where the child is what a fresh interpreter would be:

- only the first workers of `shoal run` (``LocalEngine(fork=True)``, set by shoal.prestart), which
  starts them before it imports the project's code: each worker imports the project itself, and
  its module-level state (a random generator, a connection, an open file) is its own. A worker
  replaced during the run, or started by any other caller, is a fresh interpreter;
- no project's code imported in this process all the same, and no Python thread but this one (a
  lock another thread holds would stay held in the child), on Linux;
- the project runs in this interpreter's packages (no requirements folder, which a fresh worker
  would import from first).

The child keeps only its own two pipes, and shows a worker's command line. ``SHOAL_WORKER_START=
spawn`` turns forking off.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

START_METHOD = "SHOAL_WORKER_START"  #: "spawn": always a fresh interpreter
PROJECT_MODULES = ("_shoal_project_", "_shoal_script_")  #: how shoal.project names what it imports
SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}  #: held across the fork


class Forked:
    """A forked worker, with the part of `subprocess.Popen`'s interface the engine uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while self.returncode is None:
                self._reap(0)
            return self.returncode
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(0.005)
        return code

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped by someone else: its status is lost (as Popen says, 0)
            self.returncode = 0
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def fork_is_safe() -> bool:
    """Whether a forked worker would be what a fresh one is (see the module's docstring)."""
    if os.environ.get(START_METHOD, "fork") == "spawn" or not sys.platform.startswith("linux"):
        return False
    if threading.active_count() != 1:
        return False
    return not any(name.startswith(PROJECT_MODULES) for name in sys.modules)


def fork_worker(args: list[str], keep: tuple[int, ...]) -> Forked:
    """Fork a worker running ``shoal.engines.local_worker.main(args)``; the child keeps only
    ``keep`` of this process's descriptors, as `subprocess.Popen(pass_fds=keep)` would."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # else what is buffered here would be written twice
    # Signals wait until the child has left the terminal's group and dropped our handlers: one
    # handled in between would raise in the child, on this line, and unwind into our code.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return Forked(pid)
    code = 70
    try:
        gc.freeze()  # the parent's objects are never collected here: none closes a descriptor reused since
        os.setsid()  # as start_new_session: Ctrl-C reaches the coordinator only, killed as a group
        signal.set_wakeup_fd(-1)  # the parent's, closed below: a signal must not write to a reused one
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN if number == signal.SIGINT else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        _close_all_but((0, 1, 2, *keep))
        _as_if_started(args)
        from shoal.engines.local_worker import main

        code = main(args)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # never return into the coordinator's code


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of sys.exit(x): None 0, an int itself, else x printed and 1."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    with contextlib.suppress(Exception):
        print(exc.code, file=sys.stderr)
    return 1


def _as_if_started(args: list[str]) -> None:
    """What a fresh worker would differ in: its command line (what ps and pgrep show); the current
    folder first on its import path (as ``python -m`` puts it); logging as Python starts it (not
    the command's, which would drop a pipeline's own basicConfig); and NumPy's global generator's
    seed, where shoal imported NumPy already (else every worker would draw the numbers its
    siblings draw; Python's own `random` is reseeded at a fork already)."""
    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        setproctitle(" ".join([sys.executable, "-m", "shoal.engines.local_worker", *args]))
    started_as_script = sys.path and sys.argv and sys.path[0] == os.path.dirname(os.path.abspath(sys.argv[0]))
    if started_as_script and not sys.flags.safe_path:  # the `shoal` command's own folder (venv/bin)
        sys.path[0] = os.getcwd()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _close_all_but(keep: tuple[int, ...]) -> None:
    """Close every descriptor but ``keep``: another worker's pipe held open here would hide that
    worker's end from it."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
