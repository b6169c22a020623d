"""Discord: DM notifications to the owner and owner-only DM commands, on discord.py.

The client runs in its own thread with its own asyncio loop, so the daemon's threads never wait on
Discord: `send_dm()` only appends to a bounded queue. The queue drains in order once the bot is
ready; transient failures are retried with backoff. Without valid credentials the service is simply
off (one warning) and the daemon runs as before. The owner's DMs are run by the command runner main
passes in (`commands.runner(...)`). Nothing happens at import time.
"""
from __future__ import annotations

import asyncio
import collections
import re
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiohttp
import discord

import commands
import config
import utils

MAX_MESSAGE = 2000  # Discord's limit on one message's content
QUEUE_SIZE = 100
QUEUE_FULL = "discord:queue-full"  # incident keys: each fault is said once, and again if it comes back
UNREACHABLE = "discord:unreachable"
# Faults worth a retry: the network, Discord's 5xx/429, a gateway that went away.
TRANSIENT = (OSError, asyncio.TimeoutError, aiohttp.ClientError, discord.HTTPException, discord.GatewayNotFound,
             discord.ConnectionClosed)
_SNOWFLAKE = re.compile(r"\d{1,20}")


class CredentialError(ValueError):
    """DC_API_KEY or DC_USER_ID is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class Credentials:
    token: str
    owner_id: int


def parse_credentials(token: str | None, user_id: str | int | None) -> Credentials:
    """Validate the bot token and the owner's user id (a snowflake: a positive 64-bit integer). Pure."""
    token = (token or "").strip()
    if not token:
        raise CredentialError("DC_API_KEY is not set")
    if any(ch.isspace() for ch in token) or not token.isprintable():
        raise CredentialError(f"DC_API_KEY ({utils.mask(token)}) is malformed: it contains spaces or control characters")
    raw = str(user_id if user_id is not None else "").strip()
    if not raw:
        raise CredentialError("DC_USER_ID is not set")
    if not _SNOWFLAKE.fullmatch(raw) or not 0 < int(raw) < 2**64:
        raise CredentialError(f"DC_USER_ID={raw[:40]!r} is not a Discord user id (a number like 123456789012345678)")
    return Credentials(token, int(raw))


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Text -> pieces Discord accepts (<= limit characters), split at line ends where possible. Pure."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut if cut > 0 else limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        pieces.append(text)
    return pieces


class DiscordService:
    """The bot. `start()` it once; `send_dm()` from any thread; `stop()` at shutdown.

    token/user_id default to DC_API_KEY/DC_USER_ID from `config.settings()` at `start()`.
    `run` answers the owner's DMs (default: `commands.execute` without a worker controller; the
    daemon passes `commands.runner(controls)`).
    `retries`/`retry_base` shape the backoff of a failing send; `guild_ready_timeout` is discord.py's
    wait for guild data before READY counts (tests shorten it).
    """

    def __init__(self, token: str | None = None, user_id: str | int | None = None, *, queue_size: int = QUEUE_SIZE,
                 retries: int = 5, retry_base: float = 1.0, login_backoff_max: float = 300.0,
                 guild_ready_timeout: float = 2.0, run: commands.Runner | None = None) -> None:
        self.ready = threading.Event()
        self._token, self._user_id = token, user_id
        self._creds: Credentials | None = None
        self._queue: collections.deque[str] = collections.deque()
        self._queue_size = queue_size
        self._runner = run
        self._lock = threading.Lock()
        self._retries, self._retry_base = max(1, retries), retry_base
        self._login_backoff_max = login_backoff_max
        self._guild_ready_timeout = guild_ready_timeout
        self._enabled = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mail: asyncio.Event | None = None  # set (in the loop) when the queue has something
        self._stopping: asyncio.Event | None = None
        self._client: Any = None
        self._sender: asyncio.Task | None = None
        self._handlers: set[asyncio.Task] = set()  # DM commands being answered

    # --- the thread-side API -----------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True from a successful start() until stop() or a rejected token."""
        return self._enabled

    def start(self) -> bool:
        """Start the bot thread. False (with one warning) when Discord is not configured."""
        s = config.settings()
        try:
            self._creds = parse_credentials(self._token if self._token is not None else s.DC_API_KEY,
                                            self._user_id if self._user_id is not None else s.DC_USER_ID)
        except CredentialError as exc:
            utils.log(f"[WARN] Discord disabled: {exc}. Everything else runs.", force=True)
            return False
        if self._thread is not None:
            return self._enabled
        self._enabled = True
        utils.add_notifier(self.send_dm)
        self._thread = threading.Thread(target=self._run, name="discord", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Close the client and end the thread. Messages still queued are dropped (logged)."""
        utils.remove_notifier(self.send_dm)
        self._enabled = False
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None:
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop already ended
                pass
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                utils.log("[WARN] Discord thread did not stop in time")
        self.ready.clear()
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
        if left:
            utils.log(f"[WARN] Discord stopped with {left} message(s) unsent")

    def send_dm(self, text: str) -> None:
        """Queue a DM to the owner. Any thread; never blocks. Full queue: the oldest is dropped."""
        if not self._enabled or not text:
            return
        with self._lock:
            full = len(self._queue) >= self._queue_size
            if full:
                self._queue.popleft()
            self._queue.append(str(text))
        if full:  # said once per overflow, not once per message (log only: a DM about DMs would overflow too)
            utils.incidents.raise_(QUEUE_FULL, f"Discord queue full ({self._queue_size}): dropping the oldest messages",
                                   notify=False)
        self._signal()

    def pending(self) -> int:
        """Messages waiting to be sent."""
        with self._lock:
            return len(self._queue)

    def _signal(self) -> None:
        loop, mail = self._loop, self._mail
        if loop is None or mail is None:
            return  # the loop sets `mail` itself when it starts with a non-empty queue
        try:
            loop.call_soon_threadsafe(mail.set)
        except RuntimeError:  # loop closed: stop() is under way
            pass

    def _pop(self) -> str | None:
        with self._lock:
            text = self._queue.popleft() if self._queue else None
        if text is None:
            utils.incidents.clear(QUEUE_FULL, "Discord queue drained: no more messages dropped", notify=False)
        return text

    # --- the loop side -----------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # the thread must end cleanly whatever discord.py does
            utils.log(f"[ERROR] Discord thread failed: {type(exc).__name__}: {exc}")
            utils.logger.debug("Discord thread failure", exc_info=True)
            self._disable()
        finally:
            self._loop = None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self.ready.clear()

    async def _main(self) -> None:
        self._mail, self._stopping = asyncio.Event(), asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self.pending():
            self._mail.set()
        backoff = self._retry_base
        while not self._stopping.is_set():
            try:
                await self._session()
                return
            except discord.LoginFailure:
                utils.log(f"[ERROR] Discord rejected the bot token ({utils.mask(self._creds.token)}): "
                          "Discord disabled until restart; fix DC_API_KEY", force=True)
                self._disable()
                return
            except TRANSIENT as exc:  # said once per outage; READY clears it
                utils.incidents.raise_(UNREACHABLE, f"Discord unreachable ({type(exc).__name__}: {exc}); retrying "
                                       f"with backoff up to {self._login_backoff_max:g} s", notify=False)
            if await self._wait_stopping(backoff):
                return
            backoff = min(backoff * 2, self._login_backoff_max)

    async def _session(self) -> None:
        """One client from login to close; returns when `stop()` asks."""
        intents = discord.Intents.none()
        intents.dm_messages = True  # DMs carry their content without the privileged intent
        intents.guilds = True  # not privileged; discord.py's cache misbehaves without it
        client = discord.Client(intents=intents, guild_ready_timeout=self._guild_ready_timeout)
        client.on_ready = self._on_ready
        client.on_message = self._on_message
        self._client = client
        async with client:
            runner = asyncio.create_task(client.start(self._creds.token))
            stopper = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                await self._finish_handlers()
                await self._cancel(self._sender)
                self._sender = None
                self.ready.clear()
                if not runner.done():
                    await client.close()
                    await asyncio.gather(runner, return_exceptions=True)
            runner.result()  # re-raise a login or connection failure for _main to judge

    def _disable(self) -> None:
        self._enabled = False
        utils.remove_notifier(self.send_dm)
        with self._lock:
            self._queue.clear()

    async def _wait_stopping(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _finish_handlers(self, grace: float = 2.0) -> None:
        """Let replies in flight finish (briefly), then cancel what is left."""
        pending = {t for t in self._handlers if t is not asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for task in pending:
            await self._cancel(task)

    @staticmethod
    async def _cancel(task: asyncio.Task | None) -> None:
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _on_ready(self) -> None:
        utils.log(f"[INFO] Discord bot ready as {self._client.user}")
        utils.incidents.clear(UNREACHABLE, "Discord reachable again", notify=False)
        self.ready.set()
        if self._sender is None or self._sender.done():  # READY comes again after a reconnect
            self._sender = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        """Send queued DMs in order, for as long as the client lives."""
        while True:
            await self._mail.wait()
            self._mail.clear()
            while (text := self._pop()) is not None:
                for piece in split_message(text):
                    await self._retrying(lambda p=piece: self._send_to_owner(p), "DM")

    async def _send_to_owner(self, text: str) -> None:
        channel = await self._client.create_dm(discord.Object(id=self._creds.owner_id))
        await channel.send(text)

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]], what: str) -> bool:
        """Run `attempt` until it succeeds; transient faults (network, 5xx, 429) back off and retry,
        permanent ones (403, 404, other 4xx) are logged once and dropped."""
        delay = self._retry_base
        for n in range(1, self._retries + 1):
            try:
                await attempt()
                return True
            except discord.HTTPException as exc:
                if exc.status < 500 and exc.status != 429:
                    utils.log(f"[ERROR] Discord refused a {what} ({exc.status}: {exc.text}); dropped")
                    return False
                fault = f"{exc.status}: {exc.text}"
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
                fault = f"{type(exc).__name__}: {exc}"
            if n == self._retries or self._stopping.is_set():
                utils.log(f"[ERROR] Discord {what} failed {n} time(s) ({fault}); dropped")
                return False
            utils.log(f"[WARN] Discord {what} failed ({fault}); retry {n}/{self._retries - 1} in {delay:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        return False

    async def _on_message(self, message: Any) -> None:
        """Owner's DMs are commands; everything else is ignored (only the owner controls the rig)."""
        author = message.author.id
        if self._client.user is not None and author == self._client.user.id:
            return  # our own DMs echo back through the gateway
        if message.guild is not None or not isinstance(message.channel, discord.DMChannel):
            utils.logger.debug("Discord: ignored a guild message from %s", author)
            return
        if author != self._creds.owner_id:
            utils.logger.debug("Discord: ignored a DM from %s (not the owner)", author)
            return
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await self._answer(message)
        finally:
            self._handlers.discard(task)

    async def _answer(self, message: Any) -> None:
        run = self._runner or commands.execute
        reply = await asyncio.to_thread(run, message.content, "discord")
        for piece in split_message(reply or commands.UNKNOWN_REPLY):
            await self._retrying(lambda p=piece: message.channel.send(p), "reply")


def start_discord(run: commands.Runner | None = None) -> DiscordService | None:
    """The daemon's Discord service, started; None when DC_API_KEY/DC_USER_ID are not usable."""
    service = DiscordService(run=run)
    return service if service.start() else None
