"""The rig's own facts for the API: CPU and VRM temperatures from hwmon, and the host's uptime.

Every reading is best effort: a missing chip or sensor is None, never an error. An override
(`CPU_TEMP_SENSOR=chip:label`) that names no sensor is said once, with the sensors there are.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Callable

import config
import utils


@dataclass(frozen=True)
class Reading:
    chip: str  # hwmon `name`, e.g. "k10temp"
    label: str  # tempN_label, or "tempN" when the chip gives none
    celsius: float


@dataclass(frozen=True)
class Sensors:
    cpu_temp: float | None = None
    vrm_temp: float | None = None


@dataclass(frozen=True)
class HostFacts:
    sensors: Sensors
    uptime: int | None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:  # a sensor that went away, or EIO from a flaky chip
        return None


def read_hwmon(hwmon_path: str) -> list[Reading]:
    """Every temperature under `hwmon_path` (hwmon*/name, temp*_input in millidegrees, temp*_label)."""
    readings: list[Reading] = []
    for chip_dir in sorted(glob.glob(os.path.join(glob.escape(hwmon_path), "hwmon*"))):
        chip = _read_text(os.path.join(chip_dir, "name")) or os.path.basename(chip_dir)
        for input_path in sorted(glob.glob(os.path.join(glob.escape(chip_dir), "temp*_input"))):
            raw = _read_text(input_path)
            try:
                celsius = int(raw or "") / 1000.0
            except ValueError:
                continue
            sensor = os.path.basename(input_path)[: -len("_input")]
            label = _read_text(os.path.join(chip_dir, f"{sensor}_label")) or sensor
            readings.append(Reading(chip, label, celsius))
    return readings


def _max_of(readings: list[Reading], match: Callable[[Reading], bool]) -> float | None:
    values = [r.celsius for r in readings if match(r)]
    return max(values) if values else None


def _amd_cpu(readings: list[Reading]) -> float | None:
    """k10temp/zenpower: the hottest CCD (Tccd*), else Tdie, else the control value Tctl."""
    for prefix in ("tccd", "tdie", "tctl"):
        found = _max_of(readings, lambda r: r.label.lower().startswith(prefix))
        if found is not None:
            return found
    return _max_of(readings, lambda r: True)


def _intel_cpu(readings: list[Reading]) -> float | None:
    """coretemp: the package sensor, else the hottest core."""
    package = _max_of(readings, lambda r: r.label.lower() == "package id 0")
    if package is not None:
        return package
    return _max_of(readings, lambda r: r.label.lower().startswith(("package", "core")))


_CPU_CHIPS: tuple[tuple[str, Callable[[list[Reading]], float | None]], ...] = (
    ("k10temp", _amd_cpu),
    ("zenpower", _amd_cpu),
    ("coretemp", _intel_cpu),
    ("cpu_thermal", lambda rs: _max_of(rs, lambda r: True)),
)


def auto_cpu_temp(readings: list[Reading]) -> float | None:
    """The CPU's temperature from the first known CPU chip (AMD, Intel, Raspberry Pi)."""
    for chip, choose in _CPU_CHIPS:
        mine = [r for r in readings if r.chip.lower() == chip]
        value = choose(mine) if mine else None
        if value is not None:
            return value
    return None


def auto_vrm_temp(readings: list[Reading]) -> float | None:
    """A sensor labelled VRM on any chip, else the seed's nct6687 "Thermistor 15"."""
    vrm = _max_of(readings, lambda r: "vrm" in r.label.lower())
    if vrm is not None:
        return vrm
    return _max_of(readings, lambda r: r.chip.lower() == "nct6687" and r.label.lower() == "thermistor 15")


def pick_sensor(readings: list[Reading], spec: str) -> float | None:
    """The reading named by "chip:label" (or just "label", any chip), case-insensitive; None if absent."""
    chip, _, label = spec.strip().rpartition(":") if ":" in spec else ("", "", spec.strip())
    chip, label = chip.strip().lower(), label.strip().lower()
    return _max_of(readings, lambda r: r.label.lower() == label and (not chip or r.chip.lower() == chip))


def _choose(readings: list[Reading], override: str, auto: Callable[[list[Reading]], float | None], what: str) -> float | None:
    if not override.strip():
        return auto(readings)
    value = pick_sensor(readings, override)
    key = f"sensor:{what}:{override}"
    if value is None:
        names = ", ".join(sorted({f"{r.chip}:{r.label}" for r in readings})) or "none"
        utils.incidents.raise_(key, f"{what} sensor {override!r} not found; available: {names}", notify=False)
    else:
        utils.incidents.clear(key, f"{what} sensor {override!r} found again", notify=False)
    return value


def read_sensors(hwmon_path: str, cpu_override: str = "", vrm_override: str = "") -> Sensors:
    """CPU and VRM temperatures in °C from hwmon; None where there is no such sensor, never an error."""
    readings = read_hwmon(hwmon_path)
    return Sensors(
        cpu_temp=_choose(readings, cpu_override, auto_cpu_temp, "CPU_TEMP_SENSOR"),
        vrm_temp=_choose(readings, vrm_override, auto_vrm_temp, "VRM_TEMP_SENSOR"),
    )


def host_uptime(path: str = "/proc/uptime") -> int | None:
    """Seconds since the host booted (the container shares the host's /proc/uptime)."""
    text = _read_text(path)
    try:
        return int(float(text.split()[0])) if text else None
    except ValueError:
        return None


def read_host_facts(s: config.Settings) -> HostFacts:
    """Sensors (as the settings choose them) and uptime, read now."""
    return HostFacts(read_sensors(s.HWMON_PATH, s.CPU_TEMP_SENSOR, s.VRM_TEMP_SENSOR), host_uptime())
