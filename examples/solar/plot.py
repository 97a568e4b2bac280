"""Draw a run's results against how the sites were simulated: results.png beside this file.

    python examples/solar/plot.py RUN_FOLDER [--truth examples/solar/data/truth.csv]

Left, each site's estimated peak power against its inverter rating (and solar-data-tools' own
capacity estimate, the 95th percentile of its readings). Right, each injected fault and whether
the analysis found it: green found, red missed, orange reported where none was put in.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
COLOURS = {"greensboro": "tab:blue", "miami": "tab:orange", "sand-point": "tab:green"}
CHECKS = ("capacity drop", "clock shift", "outage")
FOUND, MISSED, FALSE_ALARM, NOTHING = "#7bc47f", "#e8736c", "#f2b35c", "#ffffff"


def _load(run: Path, truth: Path) -> list[tuple[dict[str, str], dict[str, Any] | None]]:
    """(truth, result or None when the site failed) per simulated site, in file order."""
    results = {}
    for line in (run / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        results[Path(record["input"]).name] = record["result"]
    with truth.open(newline="") as handle:
        return [(site, results.get(site["file"])) for site in csv.DictReader(handle)]


def _cell(check: str, site: dict[str, str], result: dict[str, Any]) -> tuple[str, str]:
    """(colour, text) of one site's check: what was put in against what was found."""
    days = int(result["days"])
    injected, found, text = {
        "capacity drop": (
            site["fault"] == "capacity_drop",
            bool(result["capacity_change"]),
            f"x{result['capacity_ratio']:.2f}" if result["capacity_change"] else "",
        ),
        "clock shift": (
            site["fault"] == "clock_shift",
            bool(result["time_shift"]),
            f"{result['time_shift_minutes']} min, {result['shifted_days']} d" if result["time_shift"] else "",
        ),
        "outage": (
            site["fault"] == "outage",
            result["bad_days"] >= max(0.9 * float(site["fault_size"]), 0.05 * days),
            f"{result['bad_days']} bad d" if result["bad_days"] else "",
        ),
    }[check]
    colour = FOUND if injected and found else MISSED if injected else FALSE_ALARM if found else NOTHING
    return colour, text


def plot(run: Path, truth: Path, out: Path) -> None:
    rows = [(site, result) for site, result in _load(run, truth) if result is not None]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.25]})
    top = max(float(site["ac_kw"]) for site, _ in rows) * 1.1
    left.plot([0, top], [0, top], color="grey", linewidth=0.8, label="estimate = rating")
    for location, colour in COLOURS.items():
        mine = [(site, result) for site, result in rows if site["location"] == location]
        ratings = [float(site["ac_kw"]) for site, _ in mine]
        left.scatter(ratings, [r["peak_kw"] for _, r in mine], color=colour, label=f"{location}: peak power")
        left.scatter(ratings, [r["capacity_kw"] for _, r in mine], facecolors="none", edgecolors=colour)
    left.scatter([], [], facecolors="none", edgecolors="grey", label="solar-data-tools' capacity estimate")
    left.set(xlim=(0, top), ylim=(0, top), xlabel="inverter rating (kW, simulated)", ylabel="estimated (kW)")
    left.set_title("Capacity per site", fontsize=11)
    left.legend(fontsize=8, loc="upper left")

    cells = [[_cell(check, site, result) for check in CHECKS] for site, result in rows]
    table = right.table(
        cellText=[[text for _, text in row] for row in cells],
        cellColours=[[colour for colour, _ in row] for row in cells],
        rowLabels=[f"{site['file'].removesuffix('.csv')} ({site['location']})" for site, _ in rows],
        colLabels=list(CHECKS),
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    right.axis("off")
    right.set_title("Faults: green found, red missed, orange false alarm", fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder `shoal run` printed")
    parser.add_argument("--truth", type=Path, default=HERE / "data" / "truth.csv")
    parser.add_argument("--out", type=Path, default=HERE / "results.png")
    args = parser.parse_args()
    plot(args.run, args.truth, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
