"""`shoal feed TARGET`: send items to a streaming job at a controlled rate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

Target = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="redis+stream://host:6379/DB/STREAM, or a job's items URL on `shoal serve`",
        show_default=False,
    ),
]
Rate = Annotated[str | None, typer.Option(metavar="RATE", help="items per second, or a profile 0:10,30:50")]
Mbps = Annotated[
    str | None, typer.Option("--mbps", metavar="RATE", help="megabytes per second, or a profile 0:1,60:5,120:2")
]
Duration = Annotated[float, typer.Option(metavar="SECONDS", help="seconds to feed")]
Input = Annotated[
    Path | None,
    typer.Option("--input", "-i", metavar="DIR", help="a folder of files to send [default: synthetic frames]"),
]
Frame = Annotated[str, typer.Option(metavar="WIDTHxHEIGHT", help="synthetic frame size")]
Store = Annotated[
    Path, typer.Option(metavar="DIR", help="where sent files are written; workers must be able to read it")
]
Log = Annotated[Path, typer.Option(metavar="PATH", help="CSV of every send: time (UTC), bytes, item, uri")]
Close = Annotated[bool, typer.Option("--close/--no-close", help="end the job when done")]
Token = Annotated[str | None, typer.Option(envvar="SHOAL_TOKEN", metavar="TOKEN", help="API token for `shoal serve`")]


def feed_command(
    target: Target,
    rate: Rate = None,
    mbps: Mbps = None,
    duration: Duration = 60.0,
    input: Input = None,
    frame: Frame = "640x480",
    store: Store = Path("shoal-feed"),
    log: Log = Path("feed.csv"),
    close: Close = False,
    token: Token = None,
) -> int:
    """Send items to a streaming job, logging each send and reporting the rate achieved."""
    from shoal.errors import ConfigError
    from shoal.feed import Profile, feed, files_of, open_target, synthetic_frames

    if (rate is None) == (mbps is None):
        raise ConfigError("give exactly one of --rate (items/s) and --mbps (MB/s)")
    profile = Profile.parse(mbps, "MB") if mbps is not None else Profile.parse(str(rate), "items")
    if input is not None:
        payloads = files_of(input)
    else:
        try:
            width, height = (int(v) for v in frame.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--frame must look like 640x480, not {frame!r}") from None
        payloads = [(f"frame{i:02d}.ppm", data) for i, data in enumerate(synthetic_frames(width, height))]
    sink = open_target(target, token)
    with log.open("w", newline="", encoding="utf-8") as handle:
        report = feed(sink, payloads, profile, duration, store.resolve(), handle)
    if close:
        sink.close()
    print(f"shoal feed: {report.describe()}; log in {log}", file=sys.stderr)
    return 0
