"""A local Discord stand-in: just enough of the REST API and the gateway for discord.py 2.x.

Runs aiohttp on 127.0.0.1 in its own thread and event loop. Records the DMs the bot sends, can inject
a MESSAGE_CREATE (DM or guild, from any author), can answer 401 on login and fail message posts.

    with DiscordStandIn() as dc, dc.patched():   # points discord.py at the stand-in
        ...
        dc.wait_dms(1)

`patched()` changes the class attributes discord.http.Route.BASE and
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY for the duration (the product never does).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from aiohttp import WSMsgType, web

BOT_ID = 900000000000000001
APP_ID = 900000000000000002
JSON = "application/json"  # discord.py wants exactly this content type


@dataclass
class SentDM:
    channel_id: int
    recipient_id: int | None
    content: str


def user_payload(user_id: int, name: str = "user", bot: bool = False) -> dict:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "flags": 0, "public_flags": 0}


class DiscordStandIn:
    """The stand-in server. Attributes tests may set: `login_status` (200, 401 or 503), `fail_posts`
    (the next N message posts answer 503), `ready_gate` (clear it to hold READY back until set)."""

    def __init__(self) -> None:
        self.login_status = 200
        self.ready_gate = threading.Event()
        self.ready_gate.set()
        self.fail_posts = 0
        self.sent: list[SentDM] = []
        self.identified = 0
        self.login_attempts = 0
        self._channels: dict[int, int] = {}  # DM channel id -> recipient user id
        self._ids = itertools.count(910000000000000000)
        self._cond = threading.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "DiscordStandIn":
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="discord-standin", daemon=True)
        self._thread.start()
        if not started.wait(10) or not self.port:
            raise RuntimeError("discord stand-in did not start")
        return self

    def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._app_info)
        app.router.add_get(f"{api}/gateway", self._gateway_url)
        app.router.add_get(f"{api}/gateway/bot", self._gateway_url)
        app.router.add_post(f"{api}/users/@me/channels", self._open_dm)
        app.router.add_post(f"{api}/channels/{{channel_id}}/messages", self._post_message)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._close_sockets(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    async def _close_sockets(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()

    def __enter__(self) -> "DiscordStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @contextlib.contextmanager
    def patched(self) -> Iterator["DiscordStandIn"]:
        """Point discord.py's REST base and gateway at this stand-in, restoring them afterwards."""
        import discord.gateway
        import discord.http
        import yarl

        old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.rest_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old

    # --- what tests look at ------------------------------------------------------------------
    def wait_dms(self, n: int, timeout: float = 15) -> list[SentDM]:
        """The DMs sent so far once there are at least n (or after timeout: whatever there is)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.sent) >= n, timeout)
            return list(self.sent)

    def wait_identified(self, timeout: float = 15) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.identified > 0, timeout)

    def inject_message(self, content: str, author_id: int, guild_id: int | None = None,
                       channel_id: int | None = None) -> None:
        """Dispatch a MESSAGE_CREATE to every connected bot; without guild_id it is a DM."""
        data: dict[str, Any] = {
            "id": str(next(self._ids)), "channel_id": str(channel_id or next(self._ids)), "type": 0,
            "content": content, "author": user_payload(author_id), "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "flags": 0,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        else:
            self._channels.setdefault(int(data["channel_id"]), author_id)
        payload = {"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": data}
        asyncio.run_coroutine_threadsafe(self._broadcast(payload), self._loop).result(5)

    async def _broadcast(self, payload: dict) -> None:
        for ws in list(self._sockets):
            await ws.send_str(json.dumps(payload))

    # --- REST --------------------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # body + explicit header: text= would append "; charset=utf-8", which discord.py reads as text
        return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": JSON})

    async def _me(self, request: web.Request) -> web.Response:
        with self._cond:
            self.login_attempts += 1
            self._cond.notify_all()
        if self.login_status != 200:  # 401: a bad token; 503: Discord unreachable for now
            return self._json({"message": f"{self.login_status}: refused", "code": 0}, self.login_status)
        return self._json(user_payload(BOT_ID, "smartminer-bot", bot=True))

    async def _app_info(self, request: web.Request) -> web.Response:
        return self._json({"id": str(APP_ID), "name": "smartminer", "description": "", "icon": None,
                           "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
                           "owner": user_payload(1, "owner"), "flags": 0})

    async def _gateway_url(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url, "shards": 1,
                           "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0,
                                                   "max_concurrency": 1}})

    async def _open_dm(self, request: web.Request) -> web.Response:
        recipient = int((await request.json())["recipient_id"])
        channel_id = next((c for c, r in self._channels.items() if r == recipient), None) or next(self._ids)
        self._channels[channel_id] = recipient
        return self._json({"id": str(channel_id), "type": 1, "last_message_id": None,
                           "recipients": [user_payload(recipient)]})

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        if self.fail_posts > 0:
            self.fail_posts -= 1
            return self._json({"message": "503: Service Unavailable", "code": 0}, 503)
        content = (await request.json()).get("content", "")
        with self._cond:
            self.sent.append(SentDM(channel_id, self._channels.get(channel_id), content))
            self._cond.notify_all()
        return self._json({
            "id": str(next(self._ids)), "channel_id": str(channel_id), "type": 0, "content": content,
            "author": user_payload(BOT_ID, "smartminer-bot", bot=True), "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "flags": 0})

    # --- gateway -----------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._on_gateway_message(ws, json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
        return ws

    async def _on_gateway_message(self, ws: web.WebSocketResponse, msg: dict) -> None:
        op = msg.get("op")
        if op == 1:
            await ws.send_str(json.dumps({"op": 11}))
        elif op == 2:
            with self._cond:
                self.identified += 1
                self._cond.notify_all()
            while not self.ready_gate.is_set():  # held back by the test
                await asyncio.sleep(0.02)
            ready = {"v": 10, "user": user_payload(BOT_ID, "smartminer-bot", bot=True), "guilds": [],
                     "session_id": "standin", "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                     "application": {"id": str(APP_ID), "flags": 0}, "private_channels": []}
            await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
