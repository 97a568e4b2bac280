"""Simulate PV power measurements for many sites, from the TMY weather files bundled in pvlib.

    python examples/solar/make_data.py --sites 12 --days 730 --out examples/solar/data

Writes ``OUT/power/site-NN.csv`` (``timestamp,power_kw``: 15-minute AC power in local standard
time, what a monitoring portal exports) and ``OUT/truth.csv`` (how each site was simulated), so
the analysis can be checked against what was put in. Sites differ in weather (Greensboro NC,
Miami FL, Sand Point AK), tilt, azimuth and size, and in turn carry a fault for the analysis to
find: none, a capacity drop (a third of the array lost from 55 % of the way in), a clock shift
(one hour late over the middle third) or an outage (10 % of the days missing). ``--broken`` adds
files that cannot be analysed (a semicolon-separated export), to show that they fail alone.
Output is deterministic for a given --seed.

It needs pvlib: when this Python lacks it, it is taken from this folder's requirements.txt,
installed (once) where ``shoal run`` keeps a project's requirements, so the run finds it there.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WEATHER = {  #: location name -> TMY file in pvlib/data
    "greensboro": "723170TYA.CSV",
    "miami": "12839.tm2",
    "sand-point": "703165TY.csv",
}
FAULTS = ("none", "capacity_drop", "clock_shift", "outage")
DROP = 0.7  #: power left after a capacity drop
SHIFT_H = 1  #: hours the clock runs late during a clock shift
OUTAGE = 0.1  #: share of the days missing in an outage
STEP = "15min"


@dataclass(frozen=True)
class Site:
    """How one site was simulated: the truth its analysis is checked against."""

    file: str
    location: str
    latitude: float
    longitude: float
    tilt: float  #: degrees from horizontal
    azimuth: float  #: degrees, 180 = south
    dc_kw: float  #: module nameplate
    ac_kw: float  #: inverter rating
    fault: str
    fault_from: str  #: first day of the fault (ISO date), empty for none
    fault_to: str  #: first day after it
    fault_size: float  #: power ratio (drop), hours (shift), days missing (outage)


def _requirements_on_path() -> None:
    """Put this example's requirements on sys.path, from shoal's cache of installed
    requirements (installing them there first if needed) when this Python does not have them."""
    try:
        import pvlib  # noqa: F401
    except ImportError:
        from shoal.environments import project_environment

        env = project_environment(HERE)
        if env is not None:
            sys.path.insert(0, str(env))


def _weather(location: str) -> tuple[Any, dict[str, Any]]:
    """One typical year as an hourly array (ghi, dni, dhi, temp_air, wind_speed), each row the
    hour starting at row/24 days into the year, and the station's metadata."""
    import pvlib

    path = Path(pvlib.__file__).parent / "data" / WEATHER[location]
    if path.suffix == ".tm2":
        raw, meta = pvlib.iotools.read_tmy2(path)
        hourly = raw[["GHI", "DNI", "DHI", "DryBulb", "Wspd"]].to_numpy(float, copy=True)
        hourly[:, 3:] /= 10  # TMY2 keeps temperature and wind speed in tenths
    else:
        raw, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
        hourly = raw[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].to_numpy(float)
    return hourly, meta


def _weather_series(location: str, start: str, days: int) -> tuple[Any, dict[str, Any]]:
    """The typical year repeated over ``days`` from ``start``, on the 15-minute grid (hourly means
    put at mid-hour and interpolated), in local standard time."""
    import numpy as np
    import pandas as pd

    hourly, meta = _weather(location)
    hours = pd.date_range(pd.Timestamp(start) - pd.Timedelta("1h"), periods=days * 24 + 2, freq="h")
    leap_day_passed = hours.is_leap_year & (hours.day_of_year > 59)
    row = ((hours.day_of_year - 1 - leap_day_passed) * 24 + hours.hour).to_numpy() % len(hourly)
    columns = ["ghi", "dni", "dhi", "temp_air", "wind_speed"]
    frame = pd.DataFrame(hourly[row], index=hours + pd.Timedelta("30min"), columns=columns)
    grid = pd.date_range(start, periods=days * 96, freq=STEP)
    frame = frame.reindex(frame.index.union(grid)).interpolate("time").reindex(grid)
    return frame.astype(np.float64), meta


def _power(site: Site, weather: Any, meta: dict[str, Any]) -> Any:
    """AC power in kW with PVWatts: plane-of-array irradiance, cell temperature, module, inverter."""
    import numpy as np
    import pandas as pd
    import pvlib

    zone = f"Etc/GMT{-int(meta['TZ']):+d}"  # a fixed offset: the logger keeps standard time
    times = weather.index.tz_localize(zone)
    weather = weather.set_axis(times)
    place = pvlib.location.Location(site.latitude, site.longitude, tz=zone, altitude=float(meta["altitude"]))
    sun = place.get_solarposition(times)
    poa = pvlib.irradiance.get_total_irradiance(
        site.tilt,
        site.azimuth,
        sun["apparent_zenith"],
        sun["azimuth"],
        weather["dni"],
        weather["ghi"],
        weather["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(times),
        model="haydavies",
    )["poa_global"].where(sun["apparent_zenith"] < 90, 0.0)
    cell = pvlib.temperature.faiman(poa, weather["temp_air"], weather["wind_speed"])
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, site.dc_kw * 1000, -0.0037) * 0.9  # 10 % wiring, mismatch, dirt
    ac = pvlib.inverter.pvwatts(dc, site.ac_kw * 1000, eta_inv_nom=0.96)
    kw = np.clip(np.nan_to_num(np.asarray(ac, dtype=float)), 0, None) / 1000
    return pd.Series(kw, index=times.tz_localize(None), name="power_kw")


def _with_fault(power: Any, site: Site) -> Any:
    """The measurements as they arrive, the site's fault included."""
    import pandas as pd

    if site.fault == "none":
        return power
    start, end = pd.Timestamp(site.fault_from), pd.Timestamp(site.fault_to)
    inside = (power.index >= start) & (power.index < end)
    if site.fault == "capacity_drop":
        return power.where(~inside, power * site.fault_size)
    if site.fault == "outage":
        return power[~inside]
    late = power[inside]
    late.index = late.index + pd.Timedelta(hours=site.fault_size)
    merged = pd.concat([power[~inside & (power.index < start)], late, power[power.index >= end]])
    return merged[~merged.index.duplicated(keep="first")].sort_index()


def _sites(count: int, start: str, days: int, seed: int) -> list[Site]:
    """``count`` sites: locations and faults in turn, sizes and orientations at random."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)

    def day(share: float) -> str:
        return str((first + pd.Timedelta(days=int(days * share))).date())

    windows = {
        "none": ("", "", 0.0),
        "capacity_drop": (day(0.55), day(1.0), DROP),
        "clock_shift": (day(1 / 3), day(2 / 3), float(SHIFT_H)),
        "outage": (day(0.4), day(0.4 + max(OUTAGE, 3 / days)), float(max(round(days * OUTAGE), 3))),
    }
    sites = []
    for index in range(count):
        location = list(WEATHER)[index % len(WEATHER)]
        fault = FAULTS[index % len(FAULTS)]
        dc = round(float(rng.uniform(3, 12)), 1)
        latitude, longitude = _station(location)
        sites.append(
            Site(
                file=f"site-{index + 1:02d}.csv",
                location=location,
                latitude=latitude,
                longitude=longitude,
                tilt=round(float(rng.uniform(10, 40))),
                azimuth=round(float(rng.uniform(130, 230))),
                dc_kw=dc,
                ac_kw=round(dc / 1.15, 1),  # a usual inverter loading ratio
                fault=fault,
                fault_from=windows[fault][0],
                fault_to=windows[fault][1],
                fault_size=windows[fault][2],
            )
        )
    return sites


def _station(location: str) -> tuple[float, float]:
    _, meta = _weather(location)
    return float(meta["latitude"]), float(meta["longitude"])


def _write_broken(folder: Path, count: int) -> list[Path]:
    """Exports a spreadsheet saved with semicolons and decimal commas: no power_kw column."""
    paths = []
    for index in range(count):
        path = folder / f"broken-{index + 1:02d}.csv"
        path.write_text("timestamp;power_kw\n2022-06-01 12:00:00;3,141\n2022-06-01 12:15:00;3,152\n")
        paths.append(path)
    return paths


def make(sites: int, days: int, out: Path, start: str = "2022-01-01", broken: int = 0, seed: int = 7) -> list[Site]:
    """Write the sites' CSVs into ``out/power`` and their truth into ``out/truth.csv``."""
    _requirements_on_path()
    import numpy as np

    folder = out / "power"
    folder.mkdir(parents=True, exist_ok=True)
    table = _sites(sites, start, days, seed)
    noise = np.random.default_rng(seed + 1)
    for site in table:
        weather, meta = _weather_series(site.location, start, days)
        power = _with_fault(_power(site, weather, meta), site)
        daytime = power > 0
        power[daytime] += noise.normal(0, 0.003 * site.ac_kw, int(daytime.sum()))  # meter noise
        power.clip(lower=0).round(3).to_csv(folder / site.file, index_label="timestamp")
    _write_broken(folder, broken)
    with (out / "truth.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(table[0])) if table else [])
        writer.writeheader()
        writer.writerows(asdict(site) for site in table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=12, help="how many sites to simulate")
    parser.add_argument("--days", type=int, default=730, help="days of measurements per site")
    parser.add_argument("--start", default="2022-01-01", help="first day (local standard time)")
    parser.add_argument("--broken", type=int, default=1, help="how many broken files to add")
    parser.add_argument("--out", type=Path, default=HERE / "data", help="folder to write power/ and truth.csv to")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    table = make(args.sites, args.days, args.out, args.start, args.broken, args.seed)
    faults = sum(site.fault != "none" for site in table)
    print(
        f"wrote {len(table)} sites x {args.days} days ({faults} with a fault, {args.broken} broken file(s)) "
        f"to {args.out / 'power'}, and how they were made to {args.out / 'truth.csv'}"
    )


if __name__ == "__main__":
    main()
