"""The command language (parser, effects on config.state) and the named-pipe reader on a real FIFO."""
from __future__ import annotations

import logging
import os
import stat
import threading
import time

import pytest

import command_pipe
import commands
import config
import history
import utils
from commands import Command, parse
from tests.conftest import make_coin
from tests.log_capture import captured_log, messages

# --- parser (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("miner stop", Command("miner stop")),
        ("  MINER   Start \n", Command("miner start")),
        ("Status", Command("status")),
        ("check", Command("check")),
        ("unpin", Command("unpin")),
        ("HELP", Command("help")),
        ("exit", Command("exit")),
        ("logs ON", Command("logs", "on")),
        ("logs off", Command("logs", "off")),
        ("pin XMR", Command("pin", "XMR")),
        ("PIN   Quantum   Resistant Ledger ", Command("pin", "Quantum Resistant Ledger")),
        ("", Command("empty")),
        ("   \t ", Command("empty")),
        ("pin", Command("invalid", "usage: pin <coin>")),
        ("logs maybe", Command("invalid", "usage: logs on | logs off")),
        ("miner", Command("unknown", "miner")),
        ("rm -rf /", Command("unknown", "rm -rf /")),
        ("status please", Command("unknown", "status please")),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


def test_format_status_running_and_paused():
    now = 1_000_000.0
    snap = {"paused": False, "current_coin": "Monero", "current_income_usd": 0.12345, "pinned": None,
            "next_analysis": now + 2 * 3600 + 5 * 60 + 30}
    line = commands.format_status(snap, now)
    assert line.startswith("running | coin: Monero | income: $0.1235/day | next check: ")
    assert line.endswith("(in 2h 5m)") and "\n" not in line
    snap.update(current_coin="monero", last_ranking=[make_coin("monero", 1.0, name="Monero", symbol="XMR")])
    assert "coin: Monero (XMR) |" in commands.format_status(snap, now)
    snap["current_coin"] = "dagger"  # running, but not in the last ranking: its key is all we know
    assert "coin: dagger |" in commands.format_status(snap, now)
    snap.update(paused=True, pinned="xmr", current_coin=None, current_income_usd=None, next_analysis=None)
    assert commands.format_status(snap, now) == (
        "paused | coin: none | income: unknown | pinned: xmr | next check: not scheduled")


# --- executor effects --------------------------------------------------------------------------

RANKING = [
    make_coin("monero", 2.0, name="Monero", symbol="XMR"),
    make_coin("quantumrl", 1.0, name="Quantum Resistant Ledger", symbol="QRL"),
]


class Worker:
    """The worker controls as main wires them, recording what the commands asked for."""

    def __init__(self, stop_outcome: str = "stopped") -> None:
        self.calls: list[str] = []
        self.stop_outcome = stop_outcome

    def stop_worker(self) -> str:
        self.calls.append("stop_worker")
        if self.stop_outcome == "raise":
            raise RuntimeError("engine gone")
        return self.stop_outcome

    def reset_watchdog(self) -> None:
        self.calls.append("reset_watchdog")

    @property
    def controls(self) -> commands.WorkerControls:
        return commands.WorkerControls(stop_worker=self.stop_worker, reset_watchdog=self.reset_watchdog)


@pytest.fixture
def notes():
    got: list[str] = []
    utils.add_notifier(got.append)
    yield got
    utils.remove_notifier(got.append)


@pytest.mark.parametrize("outcome", ["stopped", "none", "failed"])
def test_miner_stop_pauses_stops_the_worker_and_says_what_happened(notes, outcome):
    worker = Worker(outcome)
    with captured_log(logging.INFO) as recs:
        reply = commands.execute("Miner Stop", source="pipe", controls=worker.controls)
    assert config.state.get("paused") is True and worker.calls == ["stop_worker"]
    assert reply == commands.STOP_REPLIES[outcome]
    assert notes == [f"{reply} (by pipe)"]
    assert any("command from pipe: miner stop" in r.getMessage() for r in recs)


def test_miner_stop_when_the_controller_fails_still_pauses_and_names_the_fault(notes):
    with captured_log(logging.WARNING) as recs:
        reply = commands.execute("miner stop", controls=Worker("raise").controls)
    assert config.state.get("paused") is True
    assert reply == commands.STOP_REPLIES["failed"]  # honest: nothing could be stopped
    assert any("RuntimeError: engine gone" in m for m in messages(recs))
    assert commands.execute("miner stop") == commands.STOP_REPLIES["failed"]  # no controller attached at all


def test_miner_start_unpauses_and_wakes(notes):
    config.state.update(paused=True)
    worker = Worker()
    reply = commands.execute("miner start", source="discord", controls=worker.controls)
    assert config.state.get("paused") is False and worker.calls == ["reset_watchdog"]
    assert config.state.wake.is_set() and config.state.get("force_check") is True
    assert "Resumed" in reply and any("by discord" in n for n in notes)


def test_miner_start_gives_failing_coins_another_chance(notes):
    config.state.update(paused=True, failing_coins={"dagger", "zephyr"})
    reply = commands.execute("miner start", controls=Worker().controls)
    assert config.state.get("failing_coins") == set()
    assert "retrying dagger, zephyr" in reply and any("retrying dagger, zephyr" in n for n in notes)


def test_a_runner_binds_the_daemons_controls():
    worker = Worker("none")
    run = commands.runner(worker.controls)
    assert run("miner stop", "discord") == commands.STOP_REPLIES["none"] and worker.calls == ["stop_worker"]


def test_a_failing_command_keeps_the_faults_type_and_message(monkeypatch):
    def broken(cmd, source, controls):
        raise KeyError("boom")

    monkeypatch.setitem(commands._WORKER_HANDLERS, "status", broken)
    with captured_log(logging.ERROR) as recs:
        reply = commands.execute("status")
    assert reply == "Command failed: KeyError: 'boom'"
    assert messages(recs) == ["command 'status' from pipe failed: KeyError: 'boom'"]


def test_check_keeps_paused():
    config.state.update(paused=True)
    reply = commands.execute("check")
    assert config.state.get("paused") is True
    assert config.state.wake.is_set() and config.state.get("force_check") is True
    assert "paused" in reply


def test_pin_by_any_name_and_unpin():
    config.state.update(last_ranking=RANKING)
    for key in ("qrl", "Quantum", "quantumrl", "Quantum Resistant Ledger"):
        config.state.wake.clear()
        commands.execute(f"pin {key}")
        assert config.state.get("pinned") == key and config.state.wake.is_set()
    reply = commands.execute("unpin")
    assert config.state.get("pinned") is None and "Unpinned" in reply


def test_pin_unknown_coin_lists_known_and_does_not_pin():
    config.state.update(last_ranking=RANKING)
    reply = commands.execute("pin dogecoin")
    assert config.state.get("pinned") is None
    assert not config.state.wake.is_set()
    assert "Monero (XMR)" in reply and "Quantum Resistant Ledger (QRL)" in reply


def test_pin_without_ranking_is_accepted():
    # Before the first analysis nothing is known yet: the main loop decides once it has a ranking.
    commands.execute("pin zephyr")
    assert config.state.get("pinned") == "zephyr"


def test_logs_on_off():
    commands.execute("logs off")
    assert config.state.get("logs_enabled") is False
    commands.execute("LOGS ON")
    assert config.state.get("logs_enabled") is True


def test_status_reflects_state():
    config.state.update(current_coin="Monero", current_income_usd=0.5, next_analysis=time.time() + 3700)
    line = commands.execute("status")
    assert line.startswith("running | coin: Monero | income: $0.5000/day") and "(in 1h 1m)" in line


def test_status_appends_the_history_lines_as_main_wires_them(tmp_path):
    store = history.HistoryStore(str(tmp_path / "smartminer.db"), days=7)
    store.start()
    try:
        now = time.time()
        store.record_switch(make_coin("monero", 0.42, name="Monero"), make_coin("dagger", 0.5, name="Dagger"),
                            "better income", 19.0, when=now - 1800)
        assert store.flush()
        controls = commands.WorkerControls(
            stop_worker=lambda: "none", reset_watchdog=lambda: None,
            status_extra=lambda: history.status_lines(store.last_switch(), store.average_income(24), time.time()))
        lines = commands.execute("status", "discord", controls).split("\n")
    finally:
        store.close()
    assert len(lines) == 3 and lines[0].startswith("running | coin:")
    assert lines[1].startswith("Last switch: Monero (MON) -> Dagger (DAG), 0.5 h ago (better income, +19.0%)")
    assert lines[2] == "24 h average income: no hashrate samples yet"


def test_a_failing_status_extra_is_one_line_and_status_still_answers():
    def broken() -> list[str]:
        raise OSError("database is locked")

    controls = commands.WorkerControls(stop_worker=lambda: "none", reset_watchdog=lambda: None, status_extra=broken)
    with captured_log() as recs:
        reply = commands.execute("status", "pipe", controls)
    lines = reply.split("\n")
    assert lines[0].startswith("running | coin: none") and len(lines) == 2
    assert lines[1] == "(history unavailable: OSError: database is locked)"
    assert [r.getMessage() for r in recs if r.levelno >= logging.WARNING] == [
        "status: extra lines failed: OSError: database is locked"]


def test_status_without_extra_is_the_one_line():
    assert "\n" not in commands.execute("status", "pipe", commands.NO_WORKER)


def test_help_lists_every_command():
    text = commands.execute("help")
    for name in ("miner stop", "miner start", "status", "check", "pin <coin>", "unpin", "logs on", "help", "exit"):
        assert name in text


def test_exit_sets_shutdown_and_wakes():
    assert "Shutting down" in commands.execute("exit")
    assert config.state.shutdown.is_set() and config.state.wake.is_set()


def test_unknown_is_logged_once_and_changes_nothing():
    before = config.state.snapshot()
    with captured_log(logging.DEBUG) as recs:
        assert commands.execute("fly to the moon") == commands.UNKNOWN_REPLY
    assert config.state.snapshot() == before
    assert len([r for r in recs if "fly to the moon" in r.getMessage()]) == 1


# --- the line splitter (pure) -------------------------------------------------------------------


def test_splitter_handles_split_writes_long_lines_and_junk():
    sp = command_pipe.LineSplitter(limit=10)
    assert sp.feed(b"sta") == ([], [])
    assert sp.feed(b"tus\nhelp\nche") == (["status", "help"], [])
    lines, problems = sp.feed(b"ck\n" + b"x" * 25 + b"\nunpin\n\xff\xfe\nexit")
    assert lines == ["check", "unpin"]
    assert "25 bytes" in problems[0] and "non-UTF-8" in problems[1]
    assert sp.flush() == (["exit"], [])


# --- the FIFO reader -----------------------------------------------------------------------------


class Reader:
    """listen_for_commands in a thread, on a FIFO in tmp_path; records every executed line."""

    def __init__(self, path: str, monkeypatch):
        self.path = path
        self.stop = threading.Event()
        self.lines: list[str] = []
        self.cond = threading.Condition()
        real = commands.execute

        def recording(text: str, source: str = "pipe") -> str:
            with self.cond:
                self.lines.append(text)
                self.cond.notify_all()
            return real(text, source)

        monkeypatch.setattr(commands, "execute", recording)
        self.tid: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.tid = threading.get_native_id()
        commands.listen_for_commands(stop=self.stop, path=self.path)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: is_fifo(self.path))
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reader did not stop"

    def wait_lines(self, n: int, timeout: float = 10) -> list[str]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.lines) >= n, timeout)
            return list(self.lines)

    def cpu_seconds(self) -> float:
        """User+system CPU time of the reader thread, from /proc (clock ticks)."""
        with open(f"/proc/self/task/{self.tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)  # blocks until the reader has the FIFO open
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_fifo_created_with_mode_0600_and_commands_run(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "miner_comm")
    with Reader(path, monkeypatch) as r:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        write(path, b"logs off\nstatus\n")
        assert r.wait_lines(2) == ["logs off", "status"]
    assert config.state.get("logs_enabled") is False


def test_regular_file_is_replaced_by_fifo(tmp_path, monkeypatch):
    path = str(tmp_path / "miner_comm")
    with open(path, "w") as fh:
        fh.write("exit\n")  # a stale file must not be executed
    with captured_log(logging.WARNING) as recs, Reader(path, monkeypatch) as r:
        write(path, b"logs off")  # no newline: EOF ends the line
        assert r.wait_lines(1) == ["logs off"]
    assert not config.state.shutdown.is_set()
    assert any("not a FIFO" in rec.getMessage() for rec in recs)


def test_two_writers_at_once(tmp_path, monkeypatch):
    path = str(tmp_path / "miner_comm")
    with Reader(path, monkeypatch) as r:
        fds = [os.open(path, os.O_WRONLY) for _ in range(2)]
        for i in range(20):
            os.write(fds[i % 2], f"pin coin{i}\n".encode())
        for fd in fds:
            os.close(fd)
        write(path, b"unpin\n")  # after EOF the reader re-opens and keeps going
        lines = r.wait_lines(21)
    assert lines[:20] == [f"pin coin{i}" for i in range(20)] and lines[20] == "unpin"


def test_long_line_and_binary_junk_do_not_stop_the_reader(tmp_path, monkeypatch):
    path = str(tmp_path / "miner_comm")
    with captured_log(logging.WARNING) as recs, Reader(path, monkeypatch) as r:
        write(path, b"pin " + b"a" * 5000 + b"\n\x80\x81\xfe\nlogs off\n")
        assert r.wait_lines(1) == ["logs off"]
    logged = messages(recs)
    assert any("5004 bytes" in m for m in logged)
    assert any("non-UTF-8" in m for m in logged)
    assert config.state.get("pinned") is None


def test_fifo_deleted_while_running_is_recreated(tmp_path, monkeypatch):
    path = str(tmp_path / "miner_comm")
    with Reader(path, monkeypatch) as r:
        os.unlink(path)
        wait_for(lambda: is_fifo(path))  # gone a moment ago: existing again means recreated
        write(path, b"logs off\n")
        assert r.wait_lines(1) == ["logs off"]


def test_exit_through_the_pipe_stops_a_default_reader(tmp_path):
    # With no `stop` given the reader follows the daemon's shutdown event.
    path = str(tmp_path / "miner_comm")
    t = threading.Thread(target=commands.listen_for_commands, kwargs={"path": path}, daemon=True)
    t.start()
    wait_for(lambda: is_fifo(path))
    write(path, b"EXIT\n")
    t.join(10)
    assert not t.is_alive() and config.state.shutdown.is_set()


def test_idle_reader_does_not_busy_wait(tmp_path, monkeypatch):
    path = str(tmp_path / "miner_comm")
    with Reader(path, monkeypatch) as r:
        write(path, b"status\n")  # one writer came and went: the EOF path must not spin either
        r.wait_lines(1)
        wait_for(lambda: r.tid is not None)
        before = r.cpu_seconds()
        time.sleep(2)
        used = r.cpu_seconds() - before
    assert used < 0.2, f"reader used {used:.2f} s of CPU in 2 s idle"


def test_an_unusable_pipe_is_said_once_and_its_recovery_once(tmp_path, monkeypatch):
    monkeypatch.setattr(command_pipe, "RETRY_SECONDS", 0.02)
    path = str(tmp_path / "miner_comm")
    os.mkdir(path)  # a directory where the FIFO should be: retried, said once
    opened: list[str] = []
    real_open = command_pipe._open_fifo
    monkeypatch.setattr(command_pipe, "_open_fifo", lambda p: opened.append(p) or real_open(p))
    r = Reader(path, monkeypatch)
    with captured_log(logging.INFO) as recs:
        r.thread.start()  # not `with r`: that waits for the FIFO, which cannot exist yet
        try:
            wait_for(lambda: len(opened) >= 5)  # several failed attempts
            os.rmdir(path)
            wait_for(lambda: is_fifo(path))
            write(path, b"logs off\n")
            assert r.wait_lines(1) == ["logs off"]
        finally:
            r.__exit__(None, None, None)
    logged = messages(recs)
    assert len([m for m in logged if "unusable" in m and "is a directory" in m]) == 1
    assert len([m for m in logged if "usable again" in m]) == 1
