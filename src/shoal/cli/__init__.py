"""The `shoal` command: thin commands that build settings and call the library.

Exit codes: 0 every item succeeded, 1 some failed, 2 usage or configuration error, 130
interrupted.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Annotated

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


def _register() -> None:
    """Add the commands, importing their modules only now; once, however often it is called."""
    if app.registered_commands:
        return
    from shoal.cli import feed, jobs, metrics, models, predict, retry, run, serve, submit, token, worker, workers

    app.command("run", short_help="run a project's pipeline over its inputs (resumes)")(run.run_command)
    app.command("retry", short_help="run a job's failed items again, only those")(retry.retry_command)
    app.command("feed", short_help="send items to a streaming job at a set rate")(feed.feed_command)
    app.command("worker", short_help="serve a project's pipeline to runs over a broker")(worker.worker_command)
    app.command("workers", short_help="list a broker's workers and what they run now")(workers.workers_command)
    app.add_typer(jobs.app, name="jobs", short_help="list jobs, newest first; rm and prune remove them")
    app.command("report", short_help="reprint a job's summary, rebuild its files")(jobs.report_command)
    app.add_typer(metrics.app, short_help="export Prometheus metrics, correlate them with runs")
    app.command("serve", short_help="serve the web UI and REST API")(serve.serve_command)
    app.command("submit", short_help="submit a job to a shoal server")(submit.submit_command)
    app.command("predict", short_help="answer files online from a server's warm replicas")(predict.predict_command)
    app.add_typer(token.app, name="token", short_help="create, list and revoke API tokens")
    app.add_typer(models.app, name="models", short_help="versions of served pipelines: list, promote, roll back")
    app.command("deploy", short_help="register a project as a version and roll it out")(models.deploy_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every failure to one clear line and an exit code."""
    args = (sys.argv[1:] if argv is None else argv) or ["--help"]  # no command: the help, not an error
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


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"shoal: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
