"""Workers forked from the coordinator instead of started as fresh interpreters.

A fresh interpreter spends a quarter of a second of CPU starting Python and importing shoal and
what a worker needs before it even imports the project, and on a small machine that CPU is taken
from the coordinator and the other workers starting beside it. A child forked from the
coordinator has all that already, and shares those pages with it.

Forking is used only where the child is what a fresh interpreter would be:

- this process has imported no project's code yet (shoal.prestart starts the workers first), so
  each worker imports the project itself and its module-level state (a random generator, a
  connection, an open file) is its own; nor has it initialized a GPU;
- Linux, and no Python thread but this one (a lock another thread holds would stay held in the
  child): a worker replaced during a run is started fresh;
- the project runs in this interpreter's packages (no requirements folder, which a fresh worker
  would import from first).

The child keeps only its own two pipes, and shows a worker's command line. ``SHOAL_WORKER_START=
spawn`` turns forking off.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

START_METHOD = "SHOAL_WORKER_START"  #: "spawn": always a fresh interpreter
PROJECT_MODULES = ("_shoal_project_", "_shoal_script_")  #: how shoal.project names what it imports


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
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 70
    try:
        gc.freeze()  # the parent's objects are never collected here: none closes a descriptor reused since
        os.setsid()  # as start_new_session: Ctrl-C reaches the coordinator only, killed as a group
        signal.set_wakeup_fd(-1)  # the parent's, closed below: a signal must not write to a reused one
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        _close_all_but((0, 1, 2, *keep))
        _as_if_started(args)
        from shoal.engines.local_worker import main

        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # never return into the coordinator's code


def _as_if_started(args: list[str]) -> None:
    """What a fresh worker would differ in: its command line (what ps and pgrep show), and the
    seed of NumPy's global generator where shoal imported NumPy already (else every worker would
    draw the numbers its siblings draw; Python's own `random` is reseeded at a fork already)."""
    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        setproctitle(" ".join([sys.executable, "-m", "shoal.engines.local_worker", *args]))
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
