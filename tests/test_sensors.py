"""sensors: hwmon temperatures (from recorded rigs in tests/fixtures/hwmon) and the host's uptime. Pure file reads."""
from __future__ import annotations

import logging
import os

import pytest

import config
import sensors

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hwmon")


def hwmon(name: str) -> str:
    return os.path.join(FIXTURES, name)


@pytest.mark.parametrize(
    "rig, cpu, vrm",
    [("amd", 63.75, 47.5), ("intel", 71.0, 52.5), ("zenpower", 58.0, None), ("rpi", 49.173, None), ("none", None, None)],
)
def test_sensors_found_automatically(rig, cpu, vrm):
    assert sensors.read_sensors(hwmon(rig)) == sensors.Sensors(cpu_temp=cpu, vrm_temp=vrm)


def write_chip(folder, name: str, **files: str) -> None:
    """An hwmon0 chip called `name` under `folder`, with these sysfs files (one line each)."""
    chip = folder / "hwmon0"
    chip.mkdir()
    for filename, text in {"name": name, **files}.items():
        (chip / filename).write_text(text + "\n")


def test_amd_without_ccd_values_uses_tctl(tmp_path):
    write_chip(tmp_path, "k10temp", temp1_input="68500", temp1_label="Tctl")
    assert sensors.read_sensors(str(tmp_path)).cpu_temp == 68.5


def test_unreadable_and_garbage_inputs_are_skipped(tmp_path):
    write_chip(tmp_path, "coretemp", temp1_input="not a number", temp2_input="55000")
    assert sensors.read_hwmon(str(tmp_path)) == [sensors.Reading("coretemp", "temp2", 55.0)]


@pytest.mark.parametrize(
    "cpu_spec, vrm_spec, cpu, vrm",
    [("k10temp:Tctl", "nct6687:System", 68.5, 35.0), ("nct6687:CPU", "Composite", 55.0, 40.85),
     ("K10TEMP:tccd1", "", 61.25, 47.5)],
)
def test_sensor_overrides(cpu_spec, vrm_spec, cpu, vrm):
    assert sensors.read_sensors(hwmon("amd"), cpu_spec, vrm_spec) == sensors.Sensors(cpu, vrm)


def test_override_naming_no_sensor_gives_null_and_one_warning_until_it_is_found(caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="smartminer"):
        for _ in range(3):
            assert sensors.read_sensors(hwmon("intel"), "k10temp:Tctl").cpu_temp is None
        warnings = [r for r in caplog.records if "k10temp:Tctl" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert "coretemp:Package id 0" in warnings[0].getMessage()
        assert sensors.read_sensors(hwmon("amd"), "k10temp:Tctl").cpu_temp == 68.5  # the chip is back
        assert sensors.read_sensors(hwmon("intel"), "k10temp:Tctl").cpu_temp is None  # ...and gone again
    lines = [r.getMessage() for r in caplog.records if "k10temp:Tctl" in r.getMessage()]
    assert [("not found" in m, "found again" in m) for m in lines] == [(True, False), (False, True), (True, False)]


def test_missing_hwmon_folder_gives_nulls(tmp_path):
    assert sensors.read_sensors(str(tmp_path / "absent")) == sensors.Sensors(None, None)


def test_host_facts_follow_the_settings():
    s = config.override(HWMON_PATH=hwmon("intel"), CPU_TEMP_SENSOR="coretemp:Core 1", VRM_TEMP_SENSOR="nct6798:CPUTIN")
    facts = sensors.read_host_facts(s)
    assert facts.sensors == sensors.Sensors(73.0, 45.0) and facts.uptime > 0


@pytest.mark.parametrize("text, expected", [("123.45 67.80\n", 123), ("garbage", None), ("", None)])
def test_host_uptime(tmp_path, text, expected):
    path = tmp_path / "uptime"
    path.write_text(text)
    assert sensors.host_uptime(str(path)) == expected


def test_host_uptime_of_this_machine():
    assert sensors.host_uptime() > 0
    assert sensors.host_uptime("/nonexistent/uptime") is None
