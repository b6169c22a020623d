"""worker_spec: XMRig's argument list, the option-injection guard, labels and run parameters. Pure."""
from __future__ import annotations

import os

import pytest

import config
import worker_spec
from tests.conftest import make_coin


@pytest.mark.parametrize("value", [
    "", "   ", None, "-o", "--url=evil:1", "abc def", "abc\tdef", 'ab"c', "ab'c", "ab;c", "ab$c",
    "ab`c", "ab|c", "ab&c", "ab>c", "ab\nc", "ab\x00c", "ab(c)", "ab\\c", "ab*c",
])
def test_validate_arg_refuses_what_could_become_another_option(value):
    with pytest.raises(ValueError) as err:
        worker_spec.validate_arg("wallet", value)
    assert "wallet" in str(err.value)


@pytest.mark.parametrize("value", [
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
    "pool.example.com:3333", "stratum+tcp://127.0.0.1:3333", "WALLET.rig1+50000", "rx/0", "zephyr",
])
def test_validate_arg_accepts_wallets_pools_and_algorithms(value):
    assert worker_spec.validate_arg("pool", value) == value


def test_a_refused_wallet_is_never_shown_in_full():
    wallet = "44AFFq5kSiGBoZ4NMDwYtN18 -o evil.example:1"
    with pytest.raises(ValueError) as err:
        worker_spec.validate_arg("wallet", wallet)
    assert wallet not in str(err.value) and "' '" in str(err.value)


@pytest.mark.parametrize("field, value, named", [
    ("wallet", "4abc -o attacker.example:1", "wallet"), ("pool", "--url=x:1", "pool"),
    ("algo", "rx/0 --donate-level=99", "Algo"), ("xmrig_coin", "$(reboot)", "XmrigCoin"),
])
def test_checked_args_names_the_coin_and_the_bad_field(field, value, named):
    with pytest.raises(ValueError) as err:
        worker_spec.checked_args(make_coin("evil", 1.0, name="Evil", **{field: value}))
    assert str(err.value).startswith(f"Evil: {named} ")


def test_worker_command_is_an_argument_list_with_coin_algo_and_api():
    s = config.override(MINER_THREADS=3, XMRIG_PORT=3999)
    zephyr = make_coin("zephyr", 1.0, pool="pool.zephyr:4444", xmrig_coin="zephyr", algo="rx/0")
    cmd = worker_spec.worker_command(zephyr, s, True)
    # --config first: XMRig lets options *after* --config override the file (see worker_command)
    assert cmd == ["--config=/config.json", "-o", "pool.zephyr:4444", "-u", "4zephyrWALLETabcdef0123456789",
                   "-p", "x", "-k", "--threads=3", "--coin", "zephyr", "--algo", "rx/0",
                   "--http-enabled", "--http-host", "127.0.0.1", "--http-port", "3999"]
    plain = worker_spec.worker_command(make_coin("plain", 1.0), s, False)
    assert plain[0] == "-o" and "--coin" not in plain and "--algo" not in plain


def test_worker_labels_say_the_coin_and_that_smartminer_made_it():
    labels = worker_spec.worker_labels(make_coin("quantumrl", 2.5, symbol="QRL"))
    assert labels == {"mining_coin": "quantumrl", "smartminer.managed": "true",
                      "smartminer.income_usd": "2.5", "smartminer.symbol": "QRL"}
    assert worker_spec.is_managed(labels)
    assert not worker_spec.is_managed({"mining_coin": "quantumrl"}) and not worker_spec.is_managed(None)


def test_run_parameters_default_to_a_privileged_worker_as_in_the_seed():
    kwargs = worker_spec.run_kwargs(make_coin("aaa", 1.0), config.settings(), with_config=False)
    assert kwargs["privileged"] is True and kwargs["network_mode"] == "host"
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["log_config"] == {"Type": "json-file", "Config": {"max-size": "3m", "max-file": "3"}}
    assert "detach" not in kwargs and "volumes" not in kwargs  # create() options only; no config, no mount


def test_run_parameters_mount_the_config_read_only_where_the_host_has_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    s = config.override(PATH_XMRIG_CONFIG=str(path), HOST_JSON_PATH="/srv/rig/json", WORKER_PRIVILEGED=False)
    kwargs = worker_spec.run_kwargs(make_coin("aaa", 1.0), s)  # with_config from the file's existence
    assert kwargs["volumes"] == {"/srv/rig/json/config.json": {"bind": "/config.json", "mode": "ro"}}
    assert kwargs["command"][0] == "--config=/config.json" and kwargs["privileged"] is False


def test_host_config_path_follows_host_json_path():
    s = config.override(PATH_XMRIG_CONFIG="json/config.json")
    assert worker_spec.host_config_path(s) == os.path.join(os.path.abspath("json"), "config.json")
    assert worker_spec.host_config_path(config.override(HOST_JSON_PATH="/srv/rig/json")) == "/srv/rig/json/config.json"
