"""`shoal models list|show|register|promote|rollback|alias` and `shoal deploy`: the model registry.

They change the ledger; a running `shoal serve` sharing it follows within a second or two.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shoal.cli.run import Db
from shoal.run_folder import utc
from shoal.settings import default_db

if TYPE_CHECKING:
    from shoal.store import Ledger

app = typer.Typer(help="Versions of served pipelines and the aliases that route traffic to them.", no_args_is_help=True)
Pipeline = Annotated[str, typer.Argument(metavar="PIPELINE", help="the pipeline's name", show_default=False)]
Version = Annotated[str, typer.Argument(metavar="VERSION", help="a version (its fingerprint, or a prefix)")]
By = Annotated[str | None, typer.Option(metavar="NAME", help="who does this [default: this user]")]


@contextmanager
def _ledger(db: str | None) -> Iterator[Ledger]:
    """The ledger named by --db, SHOAL_DB_URL or the default, closed after the command."""
    from shoal.store import Ledger

    ledger = Ledger(db or os.environ.get("SHOAL_DB_URL") or default_db())
    try:
        yield ledger
    finally:
        ledger.close()


def _by(by: str | None) -> str:
    return by or getpass.getuser()


@app.command("list", short_help="versions of a pipeline (or the pipelines), with their aliases")
def list_command(pipeline: Annotated[str | None, typer.Argument(metavar="[PIPELINE]")] = None, db: Db = None) -> int:
    """List a pipeline's versions, newest first, with the aliases naming each; without a
    pipeline, the pipelines the registry holds."""
    from shoal import registry

    with _ledger(db) as ledger:
        if pipeline is None:
            for name in registry.pipelines(ledger):
                print(name)
            return 0
        named: dict[str, list[str]] = {}
        for alias in registry.aliases(ledger, pipeline).values():
            share = f" {alias.weight:.0%}" if alias.weight is not None else ""
            named.setdefault(alias.version, []).append(alias.alias + share)
        for version in registry.versions(ledger, pipeline):
            tags = ", ".join(sorted(named.get(version.version, [])))
            print(f"{version.version}  {utc(version.created_at)}  {version.source or '-'}  {tags}".rstrip())
    return 0


@app.command("show", short_help="one version: where it came from, its figures, its history")
def show(pipeline: Pipeline, version: Version, db: Db = None) -> int:
    """Print a version's record and the registry events that name it, as JSON."""
    import json

    from shoal import registry

    with _ledger(db) as ledger:
        record = registry.get_version(ledger, pipeline, version)
        history = [e for e in registry.events(ledger, pipeline, 500) if e["version"] == record.version]
        aliases = [a.alias for a in registry.aliases(ledger, pipeline).values() if a.version == record.version]
        print(json.dumps({**record.__dict__, "aliases": aliases, "events": history}, indent=2, default=str))
    return 0


@app.command("register", short_help="keep a project's code and model files as a version")
def register_command(
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="the project folder")],
    source: Annotated[str | None, typer.Option(metavar="TEXT", help="where it came from (a git commit)")] = None,
    by: By = None,
    db: Db = None,
) -> int:
    """Register the project as a version (its pipeline imports first); print the version."""
    from shoal import registry

    with _ledger(db) as ledger:
        print(registry.register(ledger, project, source=source, by=_by(by)).version)
    return 0


@app.command("promote", short_help="make a version production (traffic moves within seconds)")
def promote(pipeline: Pipeline, version: Version, by: By = None, db: Db = None) -> int:
    from shoal import registry

    with _ledger(db) as ledger:
        alias = registry.promote(ledger, pipeline, version, by=_by(by))
        print(f"{pipeline}: production is {alias.version} (was {alias.previous or 'none'})")
    return 0


@app.command("rollback", short_help="production back to the version before")
def rollback(
    pipeline: Pipeline,
    reason: Annotated[str | None, typer.Option(metavar="TEXT", help="recorded with the rollback")] = None,
    by: By = None,
    db: Db = None,
) -> int:
    from shoal import registry

    with _ledger(db) as ledger:
        alias = registry.rollback(ledger, pipeline, by=_by(by), reason=reason)
        print(f"{pipeline}: production is {alias.version} again (was {alias.previous})")
    return 0


@app.command("alias", short_help="point a name at a version (or remove it with --drop)")
def alias_command(
    pipeline: Pipeline,
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[str | None, typer.Argument(metavar="[VERSION]")] = None,
    drop: Annotated[bool, typer.Option("--drop", help="remove the alias")] = False,
    by: By = None,
    db: Db = None,
) -> int:
    from shoal import registry
    from shoal.errors import ConfigError

    with _ledger(db) as ledger:
        if drop:
            if not registry.drop_alias(ledger, pipeline, alias, by=_by(by)):
                raise ConfigError(f"{pipeline} has no alias {alias!r}")
            print(f"{pipeline}: {alias} removed")
        elif version is None:
            raise ConfigError("give the VERSION the alias names, or --drop")
        else:
            print(f"{pipeline}: {alias} -> {registry.set_alias(ledger, pipeline, alias, version, by=_by(by)).version}")
    return 0


def parse_share(text: str) -> float:
    """'10%' or '0.1' as a share of traffic."""
    from shoal.errors import ConfigError

    try:
        value = float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--canary {text!r}: give a share of traffic such as 10%") from None
    if not 0 < value <= 1:
        raise ConfigError(f"--canary {text!r}: more than 0% and at most 100%")
    return value


def deploy_command(
    project: Annotated[
        str, typer.Argument(metavar="PROJECT | init DIR", help="the project folder to deploy, or `init DIR`")
    ],
    folder: Annotated[str | None, typer.Argument(metavar="[DIR]", help="with init: the repository to make")] = None,
    canary: Annotated[
        str | None, typer.Option(metavar="SHARE", help="send this share of traffic (10%) to it, guarded")
    ] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="copy traffic to it and compare, never answer")] = False,
    auto_promote: Annotated[bool, typer.Option("--auto-promote", help="promote once the guardrails pass")] = False,
    min_samples: Annotated[int, typer.Option(metavar="N", help="answers the guardrails need before judging")] = 50,
    max_error_rate: Annotated[
        float, typer.Option(metavar="RATE", help="a canary failing more than this is rolled back")
    ] = 0.02,
    max_p99_ms: Annotated[
        float | None, typer.Option(metavar="MS", help="a canary slower than this at p99 is rolled back")
    ] = None,
    max_disagreement: Annotated[
        float, typer.Option(metavar="RATE", help="a shadow disagreeing more than this is stopped")
    ] = 0.05,
    source: Annotated[str | None, typer.Option(metavar="TEXT", help="where it came from (a git commit)")] = None,
    by: By = None,
    db: Db = None,
) -> int:
    """Register the project as a version and roll it out: straight to production, as a canary
    taking a share of traffic, or as a shadow that sees a copy of it. `shoal deploy init DIR`
    makes a bare git repository whose every push is checked, smoke-run, registered and rolled
    out this way (see shoal.git_deploy)."""
    from shoal import registry
    from shoal.errors import ConfigError

    if project == "init":
        if folder is None:
            raise ConfigError("shoal deploy init DIR: name the repository folder to make")
        from shoal.git_deploy import init_repository

        init_repository(folder, db=db or os.environ.get("SHOAL_DB_URL") or default_db())
        return 0
    if folder is not None:
        raise ConfigError(f"unexpected {folder!r}: shoal deploy PROJECT [options], or shoal deploy init DIR")

    if canary and shadow:
        raise ConfigError("--canary or --shadow, not both")
    with _ledger(db) as ledger:
        record = registry.register(ledger, project, source=source, by=_by(by))
        guard: dict[str, Any] = {
            "min_samples": min_samples,
            "max_error_rate": max_error_rate,
            "max_p99_ms": max_p99_ms,
            "max_disagreement": max_disagreement,
            "auto_promote": auto_promote,
        }
        if canary:
            share = parse_share(canary)
            registry.set_alias(
                ledger, record.pipeline, registry.CANARY, record.version, by=_by(by), weight=share,
                options=guard, kind="canary", detail=f"{share:.0%} of traffic",
            )  # fmt: skip
            print(f"{record.pipeline}: {record.version} takes {share:.0%} of traffic as a canary")
        elif shadow:
            registry.set_alias(
                ledger, record.pipeline, registry.SHADOW, record.version, by=_by(by), options=guard, kind="shadow"
            )
            print(f"{record.pipeline}: {record.version} sees a copy of traffic as a shadow")
        else:
            alias = registry.promote(ledger, record.pipeline, record.version, by=_by(by), detail=source)
            print(f"{record.pipeline}: production is {alias.version} (was {alias.previous or 'none'})")
    return 0


@app.command("replay", short_help="run what one version answered through another, and compare")
def replay(
    pipeline: Pipeline,
    version: Annotated[str, typer.Option("--version", metavar="VERSION", help="whose logged answers to replay")],
    against: Annotated[str, typer.Option("--with", metavar="VERSION", help="the version to score them with")],
    limit: Annotated[int, typer.Option(metavar="N", help="the latest N answered inputs")] = 1000,
    workers: Annotated[int | None, typer.Option(metavar="N", help="worker processes for the replay")] = None,
    db: Db = None,
) -> int:
    """Re-score the inputs VERSION answered (from the request log: [serve] log_requests = true)
    with the other version, on this machine, and print how many answers agree; exit 1 if any
    differ."""
    from shoal.replay import replay_log

    with _ledger(db) as ledger:
        found = replay_log(ledger, pipeline, version, against, limit=limit, workers=workers)
    print(
        f"{pipeline}: {found.total} inputs answered by {found.version} replayed with {found.against}: "
        f"{found.agreed} agree, {len(found.differences)} differ"
    )
    for difference in found.differences[:10]:
        print(f"  input {difference['input']}: {difference['before']} -> {difference['after']}")
    return 1 if found.differences else 0
