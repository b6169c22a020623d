"""Settings, validation, run state, logging and JSON helpers."""
from __future__ import annotations

import json
import io
import logging
import os
import sys
import threading
import time

import pytest

import config
import utils
from tests.conftest import make_coin
from tests.log_capture import captured_log


def test_defaults_are_the_seeds():
    s = config.load_settings(environ={}, env_file=None)
    assert (s.CONTAINER_NAME, s.IMAGE_NAME, s.MINER_THREADS) == ("active_miner_worker", "smartminer_worker_img:latest", 1)
    assert (s.MY_HASHRATE_KH, s.INCOME_TRESHOLD, s.HOURS_INTERVAL) == (17.3, 1.05, 8)
    assert (s.PATH_WALLETS, s.PATH_POOLS, s.PATH_LINKS, s.PIPE_PATH) == (
        "json/wallets.json", "json/pools.json", "links.txt", "/tmp/miner_comm")
    assert s.WORKER_PRIVILEGED is True and s.API_PORT == 4000 and s.XMRIG_PORT == 3000


def test_environment_overrides_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MINER_THREADS=4\nHOURS_INTERVAL=2\nDC_USER_ID=123\n")
    s = config.load_settings(environ={"HOURS_INTERVAL": "3", "WORKER_PRIVILEGED": "false"}, env_file=str(env_file))
    assert s.MINER_THREADS == 4 and s.HOURS_INTERVAL == 3 and s.DC_USER_ID == "123"
    assert s.WORKER_PRIVILEGED is False


def test_missing_env_file_is_fine(tmp_path):
    assert config.load_settings(environ={}, env_file=str(tmp_path / "nope")).MINER_THREADS == 1


@pytest.mark.parametrize("name,value,words", [
    ("HOURS_INTERVAL", "0", ["HOURS_INTERVAL=0", "1 to 24"]),
    ("INCOME_TRESHOLD", "3", ["INCOME_TRESHOLD=3", "1.01 to 2"]),
    ("MY_HASHRATE_KH", "20000", ["MY_HASHRATE_KH=20000", "1 to 10000"]),
    ("MINER_THREADS", "65", ["MINER_THREADS=65", "1 to 64"]),
    ("MINER_THREADS", "four", ["MINER_THREADS='four'", "whole number"]),
    ("INCOME_TRESHOLD", "nan", ["INCOME_TRESHOLD='nan'", "a number"]),
    ("WORKER_PRIVILEGED", "maybe", ["WORKER_PRIVILEGED='maybe'", "true or false"]),
    ("LOG_LEVEL", "LOUD", ["LOG_LEVEL='LOUD'"]),
])
def test_bad_values_name_setting_value_and_range(name, value, words):
    with pytest.raises(config.ConfigError) as err:
        config.load_settings(environ={name: value}, env_file=None)
    text = str(err.value)
    assert "\n" not in text
    for w in words:
        assert w in text


def test_override_validates_and_installs():
    s = config.override(MINER_THREADS=8)
    assert config.settings() is s and s.MINER_THREADS == 8
    with pytest.raises(config.ConfigError):
        config.override(MINER_THREADS=0)


def test_run_state_is_shared_and_resettable():
    st = config.state
    st.update(paused=True, pinned="xmr", failing_coins={"dagger"})
    snap = st.snapshot()
    assert snap["paused"] is True and snap["pinned"] == "xmr" and snap["failing_coins"] == ["dagger"]
    json.dumps(snap)  # serialisable for the API
    with pytest.raises(AttributeError):
        st.update(no_such_field=1)
    st.request_wake(check=True)
    assert st.wake.is_set() and st.get("force_check") is True
    config.reset_state()
    assert config.state is st and st.get("paused") is False and not st.wake.is_set()


def test_run_state_change_is_one_atomic_read_modify_write():
    """Four threads add 1 a thousand times each through `change`: every increment must survive.

    The read and the write run with the lock released in between unless `change` holds it for both;
    the switch interval is made tiny so the threads really interleave inside the function."""
    st = config.state
    seen: list[int] = []

    def slow_increment(n: int) -> int:
        seen.append(n)
        time.sleep(0)  # give another thread the chance to read the same `n`
        return n + 1

    def bump():
        for _ in range(1000):
            st.change("switches", slow_increment)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert st.get("switches") == 4000
    assert sorted(seen) == list(range(4000))  # no two increments read the same value
    st.update(failing_coins={"dagger"})
    assert st.change("failing_coins", lambda f: f | {"zephyr"}) == {"dagger", "zephyr"}
    with pytest.raises(AttributeError):
        st.change("no_such_field", lambda v: v)


def test_reset_state_keeps_the_live_lock_and_events():
    st = config.state
    lock, wake, shutdown = st._lock, st.wake, st.shutdown
    st.update(paused=True, switches=3)
    shutdown.set()
    config.reset_state()
    assert (st._lock, st.wake, st.shutdown) == (lock, wake, shutdown)  # a waiting thread still sees them
    assert not shutdown.is_set() and st.get("paused") is False and st.get("switches") == 0


def test_log_honours_logs_enabled_and_force(caplog):
    utils.logger.propagate = True
    try:
        with caplog.at_level(logging.DEBUG, logger=utils.LOGGER_NAME):
            config.state.update(logs_enabled=False)
            utils.log("[INFO] quiet")
            utils.log("[INFO] forced", force=True)
            utils.log("[ERROR] always")
            config.state.update(logs_enabled=True)
            utils.log("[INFO] loud")
    finally:
        utils.logger.propagate = False
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "forced"), (logging.ERROR, "always"), (logging.INFO, "loud")]


def test_a_log_line_names_its_level_once():
    """"[WARN] Skipping" used to print as "WARNING [WARN] Skipping": the tag sets the level, then goes."""
    stream = io.StringIO()
    utils.setup_logging("DEBUG", stream)
    utils.log("[WARN] Skipping Zephyr: no wallet")
    utils.log("[OK] Worker started")
    line_warn, line_ok = stream.getvalue().splitlines()
    assert line_warn.endswith("WARNING Skipping Zephyr: no wallet")
    assert "[WARN]" not in line_warn
    assert line_ok.endswith("INFO    [OK] Worker started")  # a tag that says more than a level stays


def test_mask_hides_secrets():
    assert utils.mask("abcdefghijklmnop") == "abcd...mnop"
    assert utils.mask("short") == "*****"
    assert utils.mask("") == "(empty)"


def test_atomic_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "status.json"
    utils.atomic_write_json(str(path), {"a": 1})
    utils.atomic_write_json(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert os.listdir(path.parent) == ["status.json"]  # no temp file left behind


def test_atomic_write_json_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    utils.atomic_write_json(str(path), {"ok": True})
    with pytest.raises(TypeError):
        utils.atomic_write_json(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["x.json"]


def test_read_json_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "w.json"
    bad.write_text('{"a": ')
    with pytest.raises(utils.DataFileError, match=r"w.json is not valid JSON \(line 1"):
        utils.read_json(str(bad))
    with pytest.raises(utils.DataFileError, match="not found"):
        utils.read_json(str(tmp_path / "missing.json"))
    assert utils.read_json(str(tmp_path / "missing.json"), default={}) == {}
    bad.write_text("[1]")
    with pytest.raises(utils.DataFileError, match="must hold a JSON dict"):
        utils.read_json(str(bad), expect=dict)


def test_write_status_is_per_hashrate_unit(tmp_path):
    config.override(MY_HASHRATE_KH=10.0)
    monero = make_coin("monero", 2.0, name="Monero", symbol="XMR", pool="pool:3333", coins_per_day=0.01,
                       hashrate_hs=10000.0)
    path = tmp_path / "status.json"
    out = utils.write_status(monero, "rig1", path=str(path))
    saved = json.loads(path.read_text())
    assert saved == out
    assert (saved["coin"], saved["symbol"], saved["pool"], saved["worker_name"]) == ("Monero", "XMR", "pool:3333", "rig1")
    assert saved["profit_usd"] == pytest.approx(2.0 / 10000) and saved["profit_coin"] == pytest.approx(0.01 / 10000)
    measured = utils.write_status(monero, "rig1", path=str(path), hashrate_hs=20000.0)  # a measured rate wins
    assert measured["profit_usd"] == pytest.approx(2.0 / 20000)


def test_notify_reaches_sinks_and_survives_a_broken_one():
    got = []

    def broken(_text):
        raise RuntimeError("boom")

    utils.add_notifier(broken)
    utils.add_notifier(got.append)
    try:
        utils.notify("hello")
    finally:
        utils.remove_notifier(broken)
        utils.remove_notifier(got.append)
    assert got == ["hello"]


def test_incidents_notify_once_and_on_clear():
    sent = []
    inc = utils.Incidents(sent.append)
    assert inc.raise_("docker", "Docker down") is True
    assert inc.raise_("docker", "Docker down") is False
    assert inc.is_open("docker") and inc.open_keys() == ["docker"]
    assert inc.clear("docker", "Docker back") is True
    assert inc.clear("docker") is False
    assert sent == ["Docker down", "Docker back"]
    assert inc.raise_("docker", "Docker down again") is True  # a fault that comes back is said again
    assert sent[-1] == "Docker down again"


def test_incidents_without_notify_only_log_at_their_level():
    sent = []
    inc = utils.Incidents(sent.append)
    with captured_log() as recs:
        inc.raise_("pipe", "command pipe unusable", notify=False)
        inc.raise_("pipe", "command pipe unusable", notify=False)
        inc.clear("pipe", "command pipe usable again", notify=False)
    assert sent == []
    assert [(r.levelno, r.getMessage()) for r in recs] == [
        (logging.WARNING, "command pipe unusable"), (logging.INFO, "command pipe usable again")]


def test_incident_observers_see_each_open_and_each_clear_once():
    seen, also = [], []
    inc = utils.Incidents(lambda _text: None)
    inc.observe(lambda key, text, opened: seen.append((key, text, opened)))
    inc.observe(lambda key, text, opened: also.append(key))
    inc.clear("docker", "never open")  # not open: no call
    inc.raise_("docker", "Docker down")
    inc.raise_("docker", "Docker down")  # already open: no call
    inc.clear("docker", "Docker back", notify=False)
    inc.clear("docker", "Docker back")
    inc.raise_("pipe", "pipe unusable", notify=False)
    inc.clear("pipe")  # the default text is what the observer gets
    assert seen == [("docker", "Docker down", True), ("docker", "Docker back", False),
                    ("pipe", "pipe unusable", True), ("pipe", "Resolved: pipe unusable", False)]
    assert also == ["docker", "docker", "pipe", "pipe"]


def test_a_failing_incident_observer_is_logged_and_never_breaks_the_caller():
    sent, seen = [], []
    inc = utils.Incidents(sent.append)

    def broken(key, text, opened):
        raise RuntimeError("database locked")

    inc.observe(broken)
    inc.observe(broken)  # registered once
    inc.observe(lambda key, text, opened: seen.append(opened))
    with captured_log() as recs:
        assert inc.raise_("docker", "Docker down") is True
        assert inc.clear("docker", "Docker back") is True
    assert sent == ["Docker down", "Docker back"] and seen == [True, False]
    failures = [r.getMessage() for r in recs if "observer" in r.getMessage()]
    assert len(failures) == 2 and all("RuntimeError: database locked" in line for line in failures)


def test_empty_value_means_default():
    s = config.load_settings(environ={"MINER_THREADS": "", "DC_API_KEY": ""}, env_file=None)
    assert s.MINER_THREADS == 1 and s.DC_API_KEY == ""


def test_read_json_turns_pathological_json_into_a_clear_error(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"a": ' + "9" * 5000 + "}")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    for path in (big, deep):
        with pytest.raises(utils.DataFileError, match="is not usable JSON"):
            utils.read_json(str(path))
