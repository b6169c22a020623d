"""The worker container's whole life on the Docker engine: switching rule, start, stop, watchdog.

Exactly one XMRig container (`CONTAINER_NAME`) mines the best coin. The coin it mines is read back
from the container's `mining_coin` label, never from memory, so a restarted manager picks up where
it was. The decision itself (`decide`) is a pure function; everything that talks to the engine
goes through a lazily created Docker client that is dropped and re-created after a connection fault.

Nothing here raises to the caller: an engine that is down, a missing image, a wallet that could
inject XMRig options are each one clear log line (and one notification per incident).
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, TypeVar

import config
import utils

MANAGED_LABEL = "smartminer.managed"
COIN_LABEL = "mining_coin"
INCOME_LABEL = "smartminer.income_usd"
SYMBOL_LABEL = "smartminer.symbol"
CONTAINER_CONFIG_PATH = "/config.json"
DOCKER_TIMEOUT = 15  # seconds for one engine call (stop adds STOP_TIMEOUT on top)
MAX_BACKOFF_SECONDS = 3600.0
FORGIVE_SECONDS = 6 * 3600.0  # healthy this long: past watchdog failures are forgotten
ENGINE_DOWN_NOTIFY_SECONDS = 600.0  # an outage this long is worth a message to the owner
BUILD_HINT = "build it with `docker compose build worker` (or `docker build -t {image} worker/`)"


# --- the decision (pure) -------------------------------------------------------------------------
@dataclass
class Decision:
    """What to do with the worker. `action`: "stay", "start", "switch" or "none" (nothing to mine)."""

    action: str
    target: dict | None
    reason: str
    gain_pct: float | None = None


def _value(coin: dict) -> float:
    """The figure ranking compares (`strategy.rank_value`: profit when a power cost is set, else
    income). A coin without a finite figure counts as 0: rank_value says -inf for "no figure",
    which would make the gain arithmetic meaningless.
    """
    from strategy import rank_value  # lazily: strategy pulls in the scraping modules

    value = rank_value(coin)
    return value if math.isfinite(value) else 0.0


def coin_key(coin: dict) -> str:
    """A coin's stable id (the `mining_coin` label): "Key", else the link slug, else the name."""
    key = coin.get("Key") or (utils.slug_of(coin["Url"]) if coin.get("Url") else "") or coin.get("Coin name") or ""
    return str(key).strip().lower()


def _names(coin: dict, key: str) -> bool:
    """Whether `key` (a label value, a name, a ticker or a slug) names `coin`."""
    return bool(key) and (coin_key(coin) == key.strip().lower() or utils.coin_matches(coin, key))


def _find(ranking: list[dict], key: str | None) -> dict | None:
    if not key:
        return None
    return next((c for c in ranking if _names(c, key)), None)


def gain_pct(old: float, new: float) -> float | None:
    """The gain of `new` over `old` in %, None when `old` is 0 (no meaningful ratio)."""
    if old == 0:
        return None
    return (new - old) / abs(old) * 100.0


def worth_switching(old: float, new: float, threshold: float) -> bool:
    """The seed's rule: stay when old x threshold >= new.

    For a negative `old` (power costing more than mining) the seed's rule would switch to a
    *worse* coin; there the gain must beat |old| x (threshold - 1) instead.
    """
    if old >= 0:
        return not old * threshold >= new
    return new - old > -old * (threshold - 1.0)


def decide(running: str | None, ranking: list[dict], threshold: float, pin: str | None = None,
           hold: frozenset[str] | set[str] = frozenset()) -> Decision:
    """What to do, given the running coin's Key (or None), the ranking (best first), and a pin.

    A pin (any name, ticker or slug) overrides the ranking; one that matches no ranked coin is
    ignored with a warning. `hold` lists the Keys whose reading could not be trusted this cycle: a
    running coin among them keeps mining ("hold"), because a switch must never rest on a failed
    page or a held-back reading.
    """
    if not ranking:
        return Decision("none", None, "no coin to mine (empty ranking)")
    best = ranking[0]
    if pin:
        pinned = _find(ranking, pin)
        if pinned is None:
            utils.log(f"[WARN] Pinned coin {pin!r} is not in the ranking; ignoring the pin")
        else:
            if running and _names(pinned, running):
                return Decision("stay", pinned, f"pinned coin {coin_key(pinned)} is running")
            action = "switch" if running else "start"
            return Decision(action, pinned, f"pinned to {coin_key(pinned)}")
    if not running:
        return Decision("start", best, "no worker running")
    if running.strip().lower() in hold:
        return Decision("hold", None, f"no trustworthy reading of the running coin {running} this cycle")
    if _names(best, running):
        return Decision("stay", best, "stable: the running coin is the best")
    current = _find(ranking, running)
    if current is None:
        return Decision("switch", best, f"running coin {running} is not in the ranking")
    old, new = _value(current), _value(best)
    gain = gain_pct(old, new)
    if worth_switching(old, new, threshold):
        return Decision("switch", best, f"{coin_key(best)} beats {running} by more than the threshold", gain)
    return Decision("stay", current, f"gain over {running} is below the threshold", gain)


# --- worker arguments (pure) -----------------------------------------------------------------------
# Wallets, pools, algorithms and coin names are letters, digits and a few separators
# ("stratum+tcp://pool.example:3333", "WALLET.worker", "rx/0"). Anything else is refused.
_SAFE_ARG = re.compile(r"[A-Za-z0-9._:/@+=,%-]+")


def validate_arg(name: str, value: Any) -> str:
    """`value` if it is safe to hand to XMRig as one argument, else ValueError saying why.

    Refused: empty values, a leading "-" (it would become another XMRig option), whitespace,
    quotes, control characters and shell metacharacters. The message never shows the value in full.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty")
    if value.startswith("-"):
        raise ValueError(f"{name} {utils.mask(value)} starts with '-' and would be read as an XMRig option")
    bad = next((ch for ch in value if not _SAFE_ARG.fullmatch(ch)), None)
    if bad is not None:
        raise ValueError(f"{name} {utils.mask(value)} contains {bad!r}; allowed: letters, digits and . _ : / @ + = , % -")
    return value


def _checked(coin: dict) -> dict[str, str]:
    """The coin's XMRig values, validated (ValueError names the coin and the bad field)."""
    label = coin.get("Coin name") or coin_key(coin)
    out: dict[str, str] = {}
    try:
        out["pool"] = validate_arg("pool", coin.get("Pool"))
        out["wallet"] = validate_arg("wallet", coin.get("Wallet"))
        for field_name, arg in (("XmrigCoin", "coin"), ("Algo", "algo")):
            if coin.get(field_name):
                out[arg] = validate_arg(field_name, coin[field_name])
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    return out


def host_config_path(s: config.Settings) -> str:
    """XMRig's config.json as the Docker host sees it (HOST_JSON_PATH, else this process's json/)."""
    folder = s.HOST_JSON_PATH or os.path.dirname(os.path.abspath(s.PATH_XMRIG_CONFIG))
    return os.path.join(folder, os.path.basename(s.PATH_XMRIG_CONFIG))


def worker_command(coin: dict, s: config.Settings, with_config: bool) -> list[str]:
    """XMRig's argument list for `coin` (a list: the engine never splits a string).

    `--config` comes first on purpose. XMRig (BaseTransform::load) puts the options seen before
    `--config` in a chain document that sits *before* the file, and the later ones in a document
    after it; a top-level key is looked up newest first. Options after `--config` therefore win
    over config.json (its "http" block, any "pools" the owner adds), options before it would lose.
    The command line's "http" object replaces the file's whole, so it carries `--http-enabled` too.
    """
    args = _checked(coin)
    cmd = [f"--config={CONTAINER_CONFIG_PATH}"] if with_config else []
    cmd += ["-o", args["pool"], "-u", args["wallet"], "-p", "x", "-k", f"--threads={s.MINER_THREADS}"]
    if "coin" in args:
        cmd += ["--coin", args["coin"]]
    if "algo" in args:
        cmd += ["--algo", args["algo"]]
    cmd += ["--http-enabled", "--http-host", "127.0.0.1", "--http-port", str(s.XMRIG_PORT)]
    return cmd


def worker_labels(coin: dict) -> dict[str, str]:
    return {
        COIN_LABEL: coin_key(coin),
        MANAGED_LABEL: "true",
        INCOME_LABEL: str(coin.get("Income per day in usd")),
        SYMBOL_LABEL: str(coin.get("Symbol") or ""),
    }


def run_kwargs(coin: dict, s: config.Settings) -> dict[str, Any]:
    """Everything `containers.create` gets for `coin`. ValueError when the coin's values are unsafe."""
    from docker.types import LogConfig  # imported here: no work at import time

    with_config = os.path.isfile(s.PATH_XMRIG_CONFIG)
    kwargs: dict[str, Any] = {
        "image": s.IMAGE_NAME,
        "name": s.CONTAINER_NAME,
        "command": worker_command(coin, s, with_config),
        "detach": True,
        "privileged": s.WORKER_PRIVILEGED,
        "network_mode": "host",
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": LogConfig(type="json-file", config={"max-size": "3m", "max-file": "3"}),
        "labels": worker_labels(coin),
    }
    if with_config:
        kwargs["volumes"] = {host_config_path(s): {"bind": CONTAINER_CONFIG_PATH, "mode": "ro"}}
    return kwargs


def backoff_seconds(failures: int, base: float) -> float:
    """Wait before the watchdog's restart number `failures`: none for the first, then base, 2x base..."""
    if failures <= 1:
        return 0.0
    return min(base * 2 ** (failures - 2), MAX_BACKOFF_SECONDS)


def summary_hashrate(summary: Any) -> float | None:
    """`hashrate.total[0]` of an XMRig summary; None when XMRig has no figure yet (or no such field)."""
    try:
        value = summary["hashrate"]["total"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


# --- the engine ----------------------------------------------------------------------------------
class EngineDown(Exception):
    """The Docker engine cannot be reached (socket missing, refused, timed out)."""


_lock = threading.RLock()  # one container change at a time (main loop, commands, API)
_client: Any = None
_down_since: float | None = None  # time.monotonic() when the engine was first found down
_down_lock = threading.Lock()  # _down_since is touched by API threads without _lock


def _engine_errors() -> tuple[type[BaseException], ...]:
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _is_unreachable(exc: BaseException) -> bool:
    """A connection fault, as opposed to the engine answering with an error."""
    import docker

    return not isinstance(exc, docker.errors.APIError)


def get_client() -> Any:
    """The Docker client, created on first use (DOCKER_HOST setting, else the SDK's environment)."""
    global _client
    with _lock:
        if _client is None:
            import docker

            s = config.settings()
            try:
                if s.DOCKER_HOST:
                    _client = docker.DockerClient(base_url=s.DOCKER_HOST, timeout=DOCKER_TIMEOUT)
                else:
                    _client = docker.from_env(timeout=DOCKER_TIMEOUT)
                _client.ping()
            except _engine_errors() as exc:
                _client = None
                raise EngineDown(engine_fault(exc, s.DOCKER_HOST)) from None
        return _client


_FAULTS = ("No such file or directory", "Connection refused", "Permission denied", "timed out", "Read timed out")


def engine_fault(exc: BaseException, host: str = "") -> str:
    """A short reason for a failed connection, instead of the SDK's nested exception text."""
    text = str(exc)
    where = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    cause = next((f for f in _FAULTS if f in text), None)
    return f"{where}: {cause}" if cause else f"{where}: {text[:160]}"


def reset_client() -> None:
    """Drop the client (after a connection fault, or when DOCKER_HOST changes)."""
    global _client
    with _lock:
        if _client is not None:
            try:
                _client.close()
            except Exception:  # closing a broken client must not hide the fault being handled
                pass
        _client = None


def _engine_call(what: str, fn, *args, **kwargs):
    """Run one engine call; a connection fault drops the client and becomes EngineDown."""
    try:
        return fn(*args, **kwargs)
    except EngineDown:
        raise
    except _engine_errors() as exc:
        if _is_unreachable(exc):
            reset_client()
            raise EngineDown(f"{what}: {exc}") from None
        raise


def find_container(client: Any) -> Any | None:
    """The worker container (any state), or None."""
    import docker

    try:
        return _engine_call("find worker", client.containers.get, config.settings().CONTAINER_NAME)
    except docker.errors.NotFound:
        return None


def _engine_down(exc: BaseException) -> None:
    """One error line per outage, not one per caller (the API polls the worker's status often).

    The owner is told only when the outage outlasts ENGINE_DOWN_NOTIFY_SECONDS: an engine restart
    (an upgrade, a reboot of dockerd) is not worth a message, an engine down for several watchdog
    cycles is.
    """
    global _down_since
    text = f"Docker engine unreachable ({exc}): mount /var/run/docker.sock or set DOCKER_HOST; will retry next cycle"
    now = time.monotonic()
    with _down_lock:
        first = _down_since is None
        if first:
            _down_since = now
        down_for = now - _down_since
    utils.log(f"[ERROR] {text}" if first else f"[DEBUG] {text}")
    if down_for >= ENGINE_DOWN_NOTIFY_SECONDS:
        utils.incidents.raise_("docker-down", f"Docker engine unreachable for {down_for / 60:.0f} min ({exc}); "
                               "the worker cannot be watched or switched")


def _engine_up() -> None:
    """The engine answered: end an outage in progress (one line) and its incident, if any.

    Called after every successful engine call path (cycle, stop, watchdog, status reads, ping), so
    recovery is noticed by whichever caller reaches the engine first.
    """
    global _down_since
    with _down_lock:
        since, _down_since = _down_since, None
    if since is not None:
        utils.log(f"[INFO] Docker engine reachable again (after {time.monotonic() - since:.0f}s)")
    utils.incidents.clear("docker-down", "Docker engine reachable again")


T = TypeVar("T")


def _engine_work(what: str, body: Callable[[], T], down: T, error: T) -> T:
    """Run `body` against the engine. An outage is reported by `_engine_down` and answers `down`;
    any other fault is one error line and answers `error`; success ends an outage. Never raises."""
    try:
        result = body()
    except EngineDown as exc:
        _engine_down(exc)
        return down
    except Exception as exc:  # the loop, the commands and the API must go on; the line says what broke
        utils.log(f"[ERROR] {what} failed: {type(exc).__name__}: {exc}")
        return error
    _engine_up()
    return result


def _status_of(container: Any) -> str:
    return (container.attrs.get("State") or {}).get("Status") or container.status


def _label(container: Any) -> str | None:
    return ((container.attrs.get("Config") or {}).get("Labels") or {}).get(COIN_LABEL)


def _started_at(container: Any) -> float | None:
    """State.StartedAt as epoch seconds (the engine gives RFC 3339 with nanoseconds)."""
    raw = (container.attrs.get("State") or {}).get("StartedAt") or ""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", raw)
    if not match or raw.startswith("0001"):
        return None
    frac = float("0" + (match.group(2) or ".0")[:7])
    tz = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + tz).timestamp() + frac


def stop_and_remove(container: Any) -> None:
    """Stop (XMRig exits on SIGTERM; SIGKILL after STOP_TIMEOUT) and remove the container."""
    import docker

    try:
        _engine_call("stop worker", container.stop, timeout=config.settings().STOP_TIMEOUT)
        _engine_call("remove worker", container.remove, force=True)
    except docker.errors.NotFound:
        pass  # already gone


def start_worker(client: Any, coin: dict) -> Any:
    """Create and start the worker for `coin`. A start that fails leaves no container behind."""
    kwargs = run_kwargs(coin, config.settings())
    kwargs.pop("detach")  # create() is always detached; detach is a run() option
    container = _engine_call("create worker", client.containers.create, **kwargs)
    try:
        _engine_call("start worker", container.start)
    except BaseException:
        try:
            container.remove(force=True)
        except Exception as exc:  # the start's own fault is the one to report
            utils.log(f"[WARN] Could not remove the half-created worker: {exc}")
        raise
    container.reload()
    return container


# --- the cycle -----------------------------------------------------------------------------------
def _ranking(best: dict | None, coins: list[dict]) -> list[dict]:
    """`best` first, then the other coins, once each, without failing or unsafe ones."""
    failing = set(config.state.get("failing_coins"))
    out: list[dict] = []
    seen: set[str] = set()
    for coin in ([best] if best else []) + list(coins or []):
        key = coin_key(coin)
        if not key or key in seen:
            continue
        seen.add(key)
        if key in failing:
            utils.log(f"[WARN] {coin.get('Coin name') or key} is marked failing; skipping it")
            continue
        try:
            _checked(coin)
        except ValueError as exc:
            utils.log(f"[ERROR] Skipping coin {exc}")
            utils.incidents.raise_(f"bad-args:{key}", f"Coin {exc}; fix its wallet or pool")
            continue
        utils.incidents.clear(f"bad-args:{key}", f"Coin {coin.get('Coin name') or key}: wallet and pool are valid again")
        out.append(coin)
    return out


def _describe(coin: dict | None) -> str:
    if not coin:
        return "nothing"
    return f"{coin.get('Coin name') or coin_key(coin)} ({_value(coin):.4f} USD/day)"


def _log_stay(decision: Decision, running: dict | None, ranking: list[dict]) -> None:
    threshold = config.settings().INCOME_TRESHOLD
    best = ranking[0]
    if decision.target is best or decision.reason.startswith("pinned"):
        utils.log(f"[INFO] Stable: keep mining {_describe(decision.target)} ({decision.reason})")
        return
    gain = "n/a" if decision.gain_pct is None else f"{decision.gain_pct:+.2f}%"
    utils.log(f"[INFO] Staying on {_describe(decision.target)}: best is {_describe(best)}, "
              f"gain {gain} is within the {(threshold - 1) * 100:.0f}% threshold")


def _set_current(coin: dict | None, since: float | None = None) -> None:
    """The run state's view of the worker (the container's label stays the truth)."""
    if coin is None:
        config.state.update(current_coin=None, current_since=None, current_income_usd=None)
        return
    config.state.update(current_coin=coin_key(coin), current_since=since or time.time(),
                        current_income_usd=coin.get("Income per day in usd"))


def _after_stay(container: Any, decision: Decision) -> None:
    """Keep the run state in step with the engine (a restarted manager learns it here)."""
    same = config.state.get("current_coin") == coin_key(decision.target)
    since = config.state.get("current_since") if same else None
    _set_current(decision.target, since or _started_at(container))


def _after_start(decision: Decision, previous: dict | None, previous_key: str | None) -> None:
    """Run state, status.json and the owner's message after a start or a switch."""
    target = decision.target
    s = config.settings()
    _set_current(target)
    if decision.action == "switch":
        config.state.update(switches=config.state.get("switches") + 1)
    try:
        utils.write_status(target, s.CONTAINER_NAME, hashrate_hs=target.get("Hashrate H/s"))
    except OSError as exc:
        utils.log(f"[ERROR] Could not write {s.PATH_STATUS}: {exc}")
    if decision.action == "switch":
        before = _describe(previous) if previous else f"{previous_key} (no current figure)"
        gain = "n/a" if decision.gain_pct is None else f"{decision.gain_pct:+.2f}%"
        utils.notify(f"Switched mining from {before} to {_describe(target)}, gain {gain} ({decision.reason})")
    else:
        utils.notify(f"Started mining {_describe(target)} on {target.get('Pool')}")


def _dry_run(decision: Decision, container: Any) -> None:
    if decision.action in ("stay", "none", "hold"):
        utils.log(f"[INFO] [DRY-RUN] {decision.action}: {decision.reason}", force=True)
        return
    s = config.settings()
    if container is not None:
        utils.log(f"[INFO] [DRY-RUN] would stop and remove {s.CONTAINER_NAME} ({_label(container)})", force=True)
    cmd = worker_command(decision.target, s, os.path.isfile(s.PATH_XMRIG_CONFIG))
    shown = [utils.mask(a) if a == decision.target.get("Wallet") else a for a in cmd]
    utils.log(f"[INFO] [DRY-RUN] would start {s.CONTAINER_NAME} from {s.IMAGE_NAME}: {' '.join(shown)} "
              f"({decision.reason})", force=True)


def _image_missing(image: str) -> None:
    text = f"Worker image {image} not found: " + BUILD_HINT.format(image=image)
    utils.log(f"[ERROR] {text}")
    utils.incidents.raise_("image-missing", text)


def _has_image(client: Any) -> bool:
    """Whether the worker image is on the engine (checked before the old worker is stopped)."""
    import docker

    image = config.settings().IMAGE_NAME
    try:
        _engine_call("inspect image", client.images.get, image)
    except docker.errors.ImageNotFound:
        _image_missing(image)
        return False
    return True


def _start(client: Any, target: dict, clear_start_fault: bool = True) -> bool:
    """Start the worker for `target`; image missing or an engine error is logged (once notified),
    never raised. `clear_start_fault=False` when putting the previous coin back after a failed
    switch: the new coin's start fault is still there and must stay raised (and not re-notified).
    """
    import docker

    s = config.settings()
    try:
        start_worker(client, target)
    except docker.errors.ImageNotFound:
        _image_missing(s.IMAGE_NAME)
        return False
    except docker.errors.APIError as exc:
        text = f"Could not start the worker for {_describe(target)}: {exc.explanation or exc}"
        utils.log(f"[ERROR] {text}")
        utils.incidents.raise_("worker-start", text)
        return False
    key = coin_key(target)
    utils.incidents.clear(f"worker-failing:{key}", f"Worker for {key} started again")
    if clear_start_fault:
        utils.incidents.clear("image-missing", f"Worker image {s.IMAGE_NAME} found")
        utils.incidents.clear("worker-start")
    return True


def _restore(client: Any, previous: dict | None, failed: Decision) -> Decision | None:
    """After the old worker was removed and the new coin failed to start, start the old coin again
    rather than leave the rig idle. `previous` came from the ranking, so it is not failing and its
    arguments passed validation. Returns the decision taken, None when nothing could be started
    (the start incident stays raised).
    """
    if previous is None or coin_key(previous) == coin_key(failed.target):
        return None
    name = config.settings().CONTAINER_NAME
    utils.log(f"[WARN] Start of {_describe(failed.target)} failed; starting {_describe(previous)} again")
    if not _start(client, previous, clear_start_fault=False):
        utils.log(f"[ERROR] Could not start {_describe(previous)} again either: {name} is not mining")
        return None
    restored = Decision("restore", previous, f"start of {coin_key(failed.target)} failed; back on {coin_key(previous)}")
    _set_current(previous)
    utils.log(f"[INFO] Worker {name} mining {_describe(previous)} again ({restored.reason})")
    return restored


def _apply(best: dict | None, coins: list[dict], dry_run: bool, hold: frozenset[str] | set[str]) -> Decision:
    s = config.settings()
    ranking = _ranking(best, coins)
    try:
        client = get_client()
        container = find_container(client)
    except EngineDown as exc:
        if not dry_run:
            raise
        utils.log(f"[INFO] [DRY-RUN] Docker engine not reachable ({exc}): deciding as if no worker ran", force=True)
        container = None
    running = _label(container) if container is not None and _status_of(container) == "running" else None
    decision = decide(running, ranking, s.INCOME_TRESHOLD, config.state.get("pinned"), hold)
    if dry_run:
        _dry_run(decision, container)
        return decision
    if decision.action == "hold":
        utils.log(f"[WARN] {decision.reason}: it keeps mining (no switch on data that cannot be trusted)", force=True)
        return decision
    if decision.action == "none":
        utils.log(f"[WARN] No coin to mine: {decision.reason}")
        return decision
    previous = _find(ranking, running)
    if decision.action == "stay":
        _log_stay(decision, previous, ranking)
        _after_stay(container, decision)
        return decision
    if not _has_image(client):
        return decision  # keep the old worker mining rather than leave the rig idle
    if container is not None:
        utils.log(f"[INFO] Removing worker {s.CONTAINER_NAME} ({_label(container) or 'no coin'}, {_status_of(container)})")
        stop_and_remove(container)
    if _start(client, decision.target):
        utils.log(f"[INFO] Worker {s.CONTAINER_NAME} mining {_describe(decision.target)} ({decision.reason})")
        _after_start(decision, previous, running)
        return decision
    return _restore(client, previous, decision) or decision


def manage_worker(best: dict | None, coins: list[dict], dry_run: bool = False,
                  hold: frozenset[str] | set[str] = frozenset()) -> Decision:
    """One analysis' worth of worker control: decide and act. Never raises.

    `best` is strategy's pick, `coins` its ranking (best first). Failing and unsafe coins are left
    out, a pin overrides the ranking, and the running coin comes from the container's label.
    `hold`: Keys whose reading this cycle could not be trusted (see `decide`).
    Actions: "stay", "start", "switch", "restore" (the switch failed, the old coin runs again),
    "hold" (the running coin could not be read: no switch), "none" (nothing done: no coin, paused,
    engine down or an error).

    `paused` is checked again under the lock: `miner stop` sets it before taking the lock, so a
    cycle that checked it earlier and then waited here must not start a worker after the stop.
    """
    with _lock:
        if config.state.get("paused"):
            tag = "[INFO] [DRY-RUN]" if dry_run else "[DEBUG]"
            utils.log(f"{tag} Paused (miner stop): leaving the worker alone", force=dry_run)
            return Decision("none", None, "paused")
        return _engine_work("Worker control", lambda: _apply(best, coins, dry_run, hold),
                            down=Decision("none", None, "Docker engine unreachable"),
                            error=Decision("none", None, "worker control failed (see the log)"))


def stop_worker() -> str:
    """Stop and remove the worker (`miner stop`): "stopped" when one was stopped and removed,
    "none" when there was none (silent), "failed" when the engine is down or the stop failed
    (logged). Never raises.
    """
    with _lock:
        return _engine_work("Stopping the worker", _stop_and_remove_current, down="failed", error="failed")


def _stop_and_remove_current() -> str:
    container = find_container(get_client())
    if container is not None:
        stop_and_remove(container)
    _set_current(None)
    if container is None:
        return "none"
    utils.log(f"[INFO] Worker {config.settings().CONTAINER_NAME} stopped and removed")
    return "stopped"


def stop_current_container() -> bool:
    """The seed's interface: True when a worker was stopped and removed (see `stop_worker`)."""
    return stop_worker() == "stopped"


def engine_reachable() -> bool:
    """Whether the Docker engine answers now (start-up check). Never raises; logs only the end
    of an outage (`_engine_up`)."""
    try:
        _engine_call("ping", get_client().ping)
    except EngineDown:
        return False
    except Exception:  # an engine that answers with an error is reachable
        pass
    _engine_up()
    return True


def _inspect() -> Any | None:
    """The worker container, or None when there is none or the engine is down (logged)."""
    return _engine_work("Inspecting the worker", lambda: find_container(get_client()), down=None, error=None)


def running_coin() -> str | None:
    """The Key of the coin a running worker mines (its label), else None."""
    container = _inspect()
    if container is None or _status_of(container) != "running":
        return None
    return _label(container)


def worker_status() -> dict:
    """The worker as the engine reports it, for the API and `status`; {} when there is none."""
    container = _inspect()
    if container is None:
        return {}
    state = container.attrs.get("State") or {}
    labels = (container.attrs.get("Config") or {}).get("Labels") or {}
    return {
        "name": container.name,
        "state": _status_of(container),
        "coin": labels.get(COIN_LABEL),
        "symbol": labels.get(SYMBOL_LABEL),
        "income_usd_at_start": labels.get(INCOME_LABEL),
        "started_at": _started_at(container),
        "restart_count": container.attrs.get("RestartCount", 0),
        "exit_code": state.get("ExitCode"),
        "image": (container.attrs.get("Config") or {}).get("Image"),
    }


# --- the watchdog --------------------------------------------------------------------------------
@dataclass
class _Failures:
    count: int = 0
    retry_at: float | None = None  # a restart is due at this time (None: none pending)
    last_fault: float = 0.0


@dataclass
class _Watch:
    """What the watchdog remembers between ticks (creating it does no I/O)."""

    failures: dict[str, _Failures] = field(default_factory=dict)
    restarts_seen: dict[str, int] = field(default_factory=dict)  # container id -> RestartCount
    zero_since: dict[str, float] = field(default_factory=dict)  # container id -> first 0 H/s seen


_watch = _Watch()


def reset_watchdog() -> None:
    """Forget failure counts and any engine outage in progress (tests, and `miner start`).

    Every coin's failure record goes, so every `worker-failing:` incident ends here too (the
    owner is told each coin will be tried again).
    """
    global _watch, _down_since
    _watch = _Watch()
    with _down_lock:
        _down_since = None
    for key in utils.incidents.open_keys():
        if key.startswith("worker-failing:"):
            coin = key.split(":", 1)[1]
            utils.incidents.clear(key, f"Watchdog record for {coin} reset: it will be tried again")


def read_hashrate() -> float | None:
    """XMRig's current hashrate from its API (the API wrapper's client), None when unreachable."""
    import api_wrapper

    answer = api_wrapper.fetch_xmrig("/1/summary")
    if answer.error:
        utils.log(f"[DEBUG] XMRig API unavailable: {answer.error}")
        return None
    return summary_hashrate(answer.data)


def _zero_hashrate_for(container: Any, now: float, s: config.Settings) -> float | None:
    """Seconds this running worker has reported 0 H/s, None while it mines (or says nothing)."""
    rate = read_hashrate()
    if rate is None:
        return None
    if rate > 0:
        _watch.zero_since.pop(container.id, None)
        return None
    since = _watch.zero_since.setdefault(container.id, now)
    return now - since


def fault_of(container: Any, now: float, s: config.Settings) -> str | None:
    """Why this worker needs a restart, or None when it is healthy."""
    status = _status_of(container)
    restarts = int(container.attrs.get("RestartCount") or 0)
    seen = _watch.restarts_seen.get(container.id, 0)
    _watch.restarts_seen[container.id] = restarts
    if status == "restarting" or restarts > seen:
        return f"restarting in a loop ({restarts} restarts)"
    if status in ("exited", "dead", "created"):
        return f"{status} (exit code {(container.attrs.get('State') or {}).get('ExitCode')})"
    if status != "running":
        return None  # paused by a command, or being removed: not the watchdog's business
    zero = _zero_hashrate_for(container, now, s)
    if zero is not None and zero >= s.ZERO_HASHRATE_MINUTES * 60:
        return f"0 H/s for {zero / 60:.1f} min"
    return None


def _give_up(container: Any, key: str, fault: str, s: config.Settings) -> None:
    text = (f"Worker for {key} failed {s.WATCHDOG_MAX_FAILURES} times ({fault}); "
            f"giving up on {key}, the next analysis takes the next best coin")
    utils.log(f"[ERROR] {text}")
    try:
        _engine_call("stop worker", container.stop, timeout=s.STOP_TIMEOUT)
    except EngineDown:
        raise
    except Exception as exc:
        utils.log(f"[WARN] Could not stop the failing worker: {exc}")
    config.state.update(failing_coins=set(config.state.get("failing_coins")) | {key})
    utils.incidents.raise_(f"worker-failing:{key}", text)
    config.state.request_wake(check=True)


def _restart(container: Any, key: str, fault: str, failures: int, s: config.Settings) -> None:
    utils.log(f"[WARN] Watchdog: worker for {key} is {fault}; restarting (failure {failures} of {s.WATCHDOG_MAX_FAILURES})")
    _engine_call("restart worker", container.restart, timeout=s.STOP_TIMEOUT)
    container.reload()
    _watch.restarts_seen[container.id] = int(container.attrs.get("RestartCount") or 0)
    _watch.zero_since.pop(container.id, None)


def _handle_fault(container: Any, key: str, fault: str, now: float, s: config.Settings) -> None:
    """Count a new fault, then restart now, later (backoff) or never (too many failures)."""
    record = _watch.failures.setdefault(key, _Failures())
    record.last_fault = now
    if record.retry_at is None:  # a new fault, not one already waiting for its restart
        record.count += 1
        if record.count >= s.WATCHDOG_MAX_FAILURES:
            _give_up(container, key, fault, s)
            return
        record.retry_at = now + backoff_seconds(record.count, s.WATCHDOG_SECONDS)
    if now < record.retry_at:
        utils.log(f"[WARN] Watchdog: worker for {key} is {fault}; restart in {record.retry_at - now:.0f}s (backoff)")
        return
    _restart(container, key, fault, record.count, s)
    record.retry_at = None


def forgive_after(s: config.Settings) -> float:
    """How long a worker must stay healthy before its failure count starts again from 0."""
    return max(FORGIVE_SECONDS, 3 * s.ZERO_HASHRATE_MINUTES * 60, 3 * s.WATCHDOG_SECONDS)


def _forgive(key: str, now: float, s: config.Settings) -> None:
    """A worker that failed long ago and is healthy since starts again with a clean record."""
    record = _watch.failures.get(key)
    if record and record.retry_at is None and now - record.last_fault >= forgive_after(s):
        del _watch.failures[key]
        utils.incidents.clear(f"worker-failing:{key}", f"Worker for {key} healthy again: its failure record is cleared")


def watchdog_tick(now: float | None = None) -> str:
    """One watchdog check of the worker (the main loop calls it every WATCHDOG_SECONDS). Never raises.

    Returns what it saw: "paused", "missing" (no worker container: the caller may start one from
    the last ranking), "ok", "fault" (handled: restarted or given up on), "down" (engine
    unreachable) or "error".
    """
    if config.state.get("paused"):
        return "paused"
    now = time.time() if now is None else now
    with _lock:
        return _engine_work("Watchdog check", lambda: _watch_once(now, config.settings()), down="down", error="error")


def _watch_once(now: float, s: config.Settings) -> str:
    container = find_container(get_client())
    if container is None:
        return "missing"
    key = _label(container) or "unknown"
    if key in config.state.get("failing_coins"):
        return "fault"  # already given up on; the next analysis replaces it
    fault = fault_of(container, now, s)
    if fault is None:
        _forgive(key, now, s)
        return "ok"
    _handle_fault(container, key, fault, now, s)
    return "fault"
