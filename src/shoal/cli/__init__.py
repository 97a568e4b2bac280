"""The `shoal` command: thin commands that build settings and call the library.

Exit codes: 0 every item succeeded, 1 some failed, 2 usage or configuration error, 130
interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import traceback
from typing import Annotated, NoReturn

import typer
from typer.exceptions import TyperException

from shoal.cli._help import Group
from shoal.errors import ConfigError, JobStateError, LedgerWriteError, RunFolderError, ShoalError, WorkerStartError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="shoal",
    cls=Group,
    help="Run a pipeline over every item of a dataset, on one machine or many, losing none.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        print(f"shoal {version('shoal')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print shoal's version and exit")
    ] = False,
) -> None:
    """Run a pipeline over every item of a dataset, on one machine or many, losing none."""


#: (name, module, attribute, a command or a group, its one-line help), in the order help lists them
COMMANDS = (
    ("run", "run", "run_command", "command", "run a project's pipeline over its inputs (resumes)"),
    ("retry", "retry", "retry_command", "command", "run a job's failed items again, only those"),
    ("feed", "feed", "feed_command", "command", "send items to a streaming job at a set rate"),
    ("worker", "worker", "worker_command", "command", "serve a project's pipeline to runs over a broker"),
    ("workers", "workers", "workers_command", "command", "list a broker's workers and what they run now"),
    ("jobs", "jobs", "app", "group", "list jobs, newest first; rm and prune remove them"),
    ("report", "jobs", "report_command", "command", "reprint a job's summary, rebuild its files"),
    ("metrics", "metrics", "app", "group", "export Prometheus metrics, correlate them with runs"),
    ("serve", "serve", "serve_command", "command", "serve the web UI and REST API"),
    ("submit", "submit", "submit_command", "command", "submit a job to a shoal server"),
    ("predict", "predict", "predict_command", "command", "answer files online from a server's warm replicas"),
    ("token", "token", "app", "group", "create, list and revoke API tokens"),
    ("models", "models", "app", "group", "versions of served pipelines: list, promote, roll back"),
    ("deploy", "models", "deploy_command", "command", "register a project as a version and roll it out"),
)


def _register(only: str | None = None) -> None:
    """Add the commands, importing their modules only now: just the one asked for when it is
    known (so `shoal run` does not import the server), else all of them (for the help)."""
    if app.registered_commands or app.registered_groups:
        return
    import importlib

    for name, module_name, attribute, kind, summary in COMMANDS:
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(f"shoal.cli.{module_name}"), attribute)
        if kind == "group":
            app.add_typer(target, name=name, short_help=summary)
        else:
            app.command(name, short_help=summary)(target)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every failure to one clear line and an exit code."""
    args = (sys.argv[1:] if argv is None else argv) or ["--help"]  # no command: the help, not an error
    debug = "--debug" in args
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="shoal: %(message)s")
    asked = next((a for a in args if not a.startswith("-")), None)
    _register(asked if any(asked == c[0] for c in COMMANDS) else None)
    try:
        code = app(args=args, prog_name="shoal", standalone_mode=False)
    except TyperException as exc:  # bad usage: unknown option, missing argument, bad value
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "shoal"
        _fail(f"{exc.format_message()} (see '{command} --help')", debug)
        return EXIT_USAGE
    except typer.Abort:
        _fail("interrupted", debug)
        return EXIT_INTERRUPTED
    except (ConfigError, JobStateError, WorkerStartError, LedgerWriteError, RunFolderError) as exc:
        _fail(str(exc), debug)
        return EXIT_USAGE
    except ShoalError as exc:
        _fail(str(exc), debug)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail("interrupted", debug)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK


def entry() -> NoReturn:
    """The `shoal` command: `main`, then the process ends as Python would end it, less the
    unloading of every module (Arrow, matplotlib, SQLAlchemy: a quarter of a second after the
    work is done). Exit handlers still run and output is flushed; with a thread of ours still
    running, the ordinary exit waits for it."""
    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what interpreter shutdown runs first: logging, executors, finalizers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: as Python's own exit, say nothing
            stream.flush()
    os._exit(code)


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"shoal: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    entry()
