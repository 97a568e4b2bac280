"""The `shoal` command: thin commands that build settings and call the library.

Exit codes: 0 every item succeeded, 1 some failed, 2 usage or configuration error, 130
interrupted.
"""

from __future__ import annotations

import logging
import sys
import traceback

import typer
from typer.exceptions import TyperException

from shoal.errors import ConfigError, LedgerWriteError, RunFolderError, ShoalError, WorkerStartError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="shoal",
    help="Run a pipeline over every item of a dataset, on one machine or many, losing none.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from shoal.cli import feed, jobs, metrics, run, serve, submit, token, worker

    app.command("run")(run.run_command)
    app.command("feed")(feed.feed_command)
    app.command("worker")(worker.worker_command)
    app.command("jobs")(jobs.jobs_command)
    app.command("report")(jobs.report_command)
    app.add_typer(metrics.app)
    app.command("serve")(serve.serve_command)
    app.command("submit")(submit.submit_command)
    app.add_typer(token.app, name="token")


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every failure to one clear line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="shoal: %(message)s")
    _register()
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
    except (ConfigError, WorkerStartError, LedgerWriteError, RunFolderError) as exc:
        _fail(str(exc), debug)
        return EXIT_USAGE
    except ShoalError as exc:
        _fail(str(exc), debug)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail("interrupted", debug)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"shoal: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
