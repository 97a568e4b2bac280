"""Energy from Intel RAPL counters (Linux powercap), or an honest reason why there is none.

Each package zone (``/sys/class/powercap/intel-rapl:N``) counts microjoules in ``energy_uj`` and
wraps at ``max_energy_range_uj``; sub-zones (core, uncore, dram) are parts of a package and are
not added again. Many kernels make ``energy_uj`` readable by root only, and virtual machines and
containers usually have no powercap zones at all: then the figure is missing, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
PACKAGE = re.compile(r"intel-rapl:\d+$")  #: package zones; intel-rapl:0:1 is a part of intel-rapl:0


@dataclass
class Reading:
    """Counters of every package zone at one moment, or the reason they cannot be read."""

    microjoules: dict[str, int] = field(default_factory=dict)  #: zone path -> energy_uj
    ranges: dict[str, int] = field(default_factory=dict)  #: zone path -> max_energy_range_uj
    reason: str | None = None


def read(root: Path = POWERCAP) -> Reading:
    if not root.exists():
        return Reading(reason=f"{root} does not exist: this kernel offers no powercap interface (a VM or container?)")
    zones = sorted(p for p in root.iterdir() if PACKAGE.match(p.name))
    if not zones:
        return Reading(reason=f"no intel-rapl package zones under {root}")
    reading = Reading()
    for zone in zones:
        try:
            reading.microjoules[str(zone)] = int((zone / "energy_uj").read_text())
            reading.ranges[str(zone)] = int((zone / "max_energy_range_uj").read_text())
        except PermissionError:
            return Reading(reason=f"{zone / 'energy_uj'} is readable by root only (run as root to get energy)")
        except (OSError, ValueError) as exc:
            return Reading(reason=f"cannot read {zone / 'energy_uj'}: {exc}")
    return reading


def between(first: Reading, last: Reading, seconds: float) -> dict[str, Any]:
    """Joules and mean watts over the window, per zone and in all; or why there are none."""
    reason = first.reason or last.reason
    if reason is None and set(first.microjoules) != set(last.microjoules):
        reason = "the RAPL zones changed during the experiment"
    if reason is not None:
        line = f"energy: RAPL counters not available on this machine ({reason})"
        return {"available": False, "reason": reason, "line": line}
    zones = {}
    for zone, start in first.microjoules.items():
        delta = last.microjoules[zone] - start
        if delta < 0:  # the counter wrapped once (it does every few minutes to hours)
            delta += first.ranges[zone]
        zones[Path(zone).name] = round(delta / 1e6, 3)
    joules = sum(zones.values())
    watts = joules / seconds if seconds > 0 else float("nan")
    line = f"energy: {joules:.1f} J over {seconds:.1f} s, {watts:.1f} W mean"
    line += f" (RAPL, {len(zones)} CPU packages: every process on them, not the job alone)"
    return {"available": True, "joules": round(joules, 3), "watts": round(watts, 3), "zones": zones, "line": line}
