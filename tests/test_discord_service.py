"""The real discord.py client of discord_service against the local Discord stand-in (tests/discord_standin.py)."""
from __future__ import annotations

import logging
import time

import pytest

import config
import discord_service
import utils
from discord_service import CredentialError, DiscordService, parse_credentials, split_message
from tests.discord_standin import DiscordStandIn
from tests.log_capture import captured_log, messages

OWNER = 123456789012345678
STRANGER = 876543210987654321


@pytest.fixture
def dc():
    with DiscordStandIn() as standin, standin.patched():
        yield standin


@pytest.fixture
def make(dc):
    """Build services pointed at the stand-in; every one is stopped (and its thread gone) afterwards."""
    made: list[DiscordService] = []

    def build(**kw) -> DiscordService:
        kw.setdefault("token", "test.bot.token")
        kw.setdefault("user_id", str(OWNER))
        svc = DiscordService(guild_ready_timeout=0.05, retry_base=0.05, **kw)
        made.append(svc)
        return svc

    yield build
    for svc in made:
        svc.stop()
        assert svc._thread is None or not svc._thread.is_alive()


def started(svc: DiscordService) -> DiscordService:
    assert svc.start() is True
    assert svc.ready.wait(15), "the bot never became ready"
    return svc


# --- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token, uid, fault", [
    ("", "1", "DC_API_KEY is not set"),
    ("  ", "1", "DC_API_KEY is not set"),
    ("abc def", "1", "malformed"),
    ("tok", "", "DC_USER_ID is not set"),
    ("tok", None, "DC_USER_ID is not set"),
    ("tok", "@owner", "not a Discord user id"),
    ("tok", "-5", "not a Discord user id"),
    ("tok", "0", "not a Discord user id"),
    ("tok", "99999999999999999999999", "not a Discord user id"),
])
def test_bad_credentials(token, uid, fault):
    with pytest.raises(CredentialError, match=fault):
        parse_credentials(token, uid)


def test_good_credentials():
    assert parse_credentials(" tok.en ", f" {OWNER} ") == discord_service.Credentials("tok.en", OWNER)


def test_split_message():
    assert split_message("") == []
    assert split_message("short") == ["short"]
    pieces = split_message("a" * 5 + "\n" + "b" * 8, limit=10)
    assert pieces == ["aaaaa", "bbbbbbbb"]
    assert split_message("x" * 25, limit=10) == ["x" * 10, "x" * 10, "x" * 5]


# --- disabled -----------------------------------------------------------------------------------


def test_missing_or_malformed_credentials_disable_with_one_warning():
    with captured_log(logging.WARNING) as recs:
        assert discord_service.start_discord() is None  # defaults: nothing set
        config.override(DC_API_KEY="some-token", DC_USER_ID="not-a-number")
        svc = DiscordService()
        assert svc.start() is False
        svc.send_dm("goes nowhere")  # a no-op, never an error
        utils.notify("nobody listens")
    logged = messages(recs, logging.WARNING)
    assert len(logged) == 2, logged
    assert "DC_API_KEY is not set" in logged[0] and "DC_USER_ID" in logged[1]
    assert svc._thread is None and svc.pending() == 0
    assert "some-token" not in " ".join(logged)


def test_401_on_login_gives_one_error_and_no_retry(dc, make):
    dc.login_status = 401
    svc = make(token="bad.token.value")
    with captured_log(logging.WARNING) as recs:
        assert svc.start() is True
        svc._thread.join(15)
        assert not svc._thread.is_alive(), "the bot kept trying after a 401"
        svc.send_dm("dropped")
    errors = messages(recs, logging.ERROR)
    assert len(errors) == 1 and "rejected the bot token" in errors[0]
    assert "bad.token.value" not in errors[0]
    assert dc.login_attempts == 1 and not svc.enabled and not svc.ready.is_set()
    assert dc.sent == []


# --- against the stand-in -----------------------------------------------------------------------


def test_ready_then_dm_reaches_the_owner(dc, make):
    svc = started(make())
    svc.send_dm("Switched from Monero to Zephyr")
    sent = dc.wait_dms(1)
    assert [(m.recipient_id, m.content) for m in sent] == [(OWNER, "Switched from Monero to Zephyr")]


def test_messages_queued_before_ready_arrive_in_order(dc, make):
    dc.ready_gate.clear()  # the stand-in holds READY back
    svc = make()
    assert svc.start()
    assert dc.wait_identified()
    for i in range(3):
        svc.send_dm(f"early {i}")
    utils.notify("early via notify")  # start() registered the service as a notifier
    assert not svc.ready.is_set() and dc.sent == [] and svc.pending() == 4
    dc.ready_gate.set()
    sent = dc.wait_dms(4)
    assert [m.content for m in sent] == ["early 0", "early 1", "early 2", "early via notify"]
    assert {m.recipient_id for m in sent} == {OWNER}


def test_full_queue_drops_the_oldest(dc, make):
    dc.ready_gate.clear()
    svc = make(queue_size=3)
    assert svc.start() and dc.wait_identified()
    with captured_log(logging.WARNING) as recs:
        for i in range(6):
            svc.send_dm(f"m{i}")
    assert len(messages(recs, logging.WARNING)) == 1  # one warning per overflow, not per message
    dc.ready_gate.set()
    assert [m.content for m in dc.wait_dms(3)] == ["m3", "m4", "m5"]
    deadline = time.monotonic() + 10  # the sender finds the queue empty just after the last DM
    while utils.incidents.is_open(discord_service.QUEUE_FULL) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not utils.incidents.is_open(discord_service.QUEUE_FULL)  # drained: the overflow is over
    dc.ready_gate.clear()
    svc.stop()
    again = make(queue_size=1)
    with captured_log(logging.WARNING) as recs:
        again.send_dm("a")  # not started: dropped, no overflow
        assert again.start() and dc.wait_identified()
        for i in range(3):
            again.send_dm(f"n{i}")
    assert len(messages(recs, logging.WARNING)) == 1  # a new overflow is said again
    dc.ready_gate.set()
    assert [m.content for m in dc.wait_dms(4)][3:] == ["n2"]


def test_an_outage_is_said_once_and_its_end_once(dc, make):
    dc.login_status = 503  # Discord answers, but not yet usefully
    svc = make()
    with captured_log(logging.INFO) as recs:
        assert svc.start()
        deadline = time.monotonic() + 15
        while dc.login_attempts < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dc.login_attempts >= 3, "the bot stopped retrying"
        dc.login_status = 200
        assert svc.ready.wait(15), "the bot never recovered"
    logged = messages(recs)
    assert len([m for m in logged if "Discord unreachable" in m]) == 1
    assert len([m for m in logged if "Discord reachable again" in m]) == 1


def test_owner_commands_go_to_the_runner_the_daemon_passes(dc, make):
    seen: list[tuple[str, str]] = []
    started(make(run=lambda text, source: seen.append((text, source)) or f"ran {text.strip()}"))
    dc.inject_message("miner stop", OWNER)
    assert [m.content for m in dc.wait_dms(1)] == ["ran miner stop"]
    assert seen == [("miner stop", "discord")] and config.state.get("paused") is False


def test_transient_failures_are_retried(dc, make):
    svc = started(make())
    dc.fail_posts = 2  # two 503s, then it works
    svc.send_dm("after two failures")
    sent = dc.wait_dms(1)
    assert [m.content for m in sent] == ["after two failures"] and dc.fail_posts == 0


def test_incidents_reach_the_owner_once_and_on_clearing(dc, make):
    started(make())
    incidents = utils.Incidents()  # same class as utils.incidents, sending through utils.notify
    incidents.raise_("engine", "Docker engine down for 3 cycles")
    incidents.raise_("engine", "Docker engine down for 4 cycles")  # still open: not sent again
    incidents.clear("engine", "Docker engine is back")
    utils.notify("sentinel")
    assert [m.content for m in dc.wait_dms(3)] == ["Docker engine down for 3 cycles", "Docker engine is back", "sentinel"]


def test_owner_commands_run_and_get_replies(dc, make):
    started(make())
    dc.inject_message("  LOGS OFF ", OWNER)
    dc.inject_message("fly me to the moon", OWNER)
    sent = dc.wait_dms(2)
    assert [m.content for m in sent] == ["Logs off.", "unknown command, try help"]
    assert {m.recipient_id for m in sent} == {OWNER}
    assert config.state.get("logs_enabled") is False


def test_strangers_and_guild_messages_are_ignored(dc, make):
    started(make())
    with captured_log(logging.DEBUG) as recs:
        dc.inject_message("exit", STRANGER)  # a DM, but not from the owner
        dc.inject_message("exit", OWNER, guild_id=555)  # the owner, but in a server channel
        dc.inject_message("status", OWNER)  # sentinel: handled after the two above
        sent = dc.wait_dms(1)
    assert len(sent) == 1 and sent[0].content.startswith("running | coin: none")
    assert not config.state.shutdown.is_set()
    logged = messages(recs)
    assert any("not the owner" in m for m in logged) and any("guild message" in m for m in logged)


def test_stop_ends_the_thread_and_unregisters(dc, make):
    svc = started(make())
    svc.stop()
    assert not svc._thread.is_alive() and not svc.ready.is_set()
    utils.notify("after stop")
    assert dc.sent == []
