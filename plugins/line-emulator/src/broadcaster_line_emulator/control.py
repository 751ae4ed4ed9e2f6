"""The HTTP control API under `/_emulator/`, for driving an emulator in another process.

Every body is JSON; errors are `{"error": "..."}` with 400 (bad input) or 404 (unknown
channel). See the package docstring for the full list of routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .aggregation import Engagement
from .clock import ManualClock
from .faults import Faults
from .ratelimit import Rate
from .responses import dumps
from .state import Account, Tier

if TYPE_CHECKING:
    from .emulator import LineEmulator

PREFIX = "/_emulator"
Handler = Callable[[web.Request], Awaitable[web.Response]]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        value = await request.json()
    except ValueError as exc:
        raise ControlError(400, f"body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ControlError(400, "body must be a JSON object")
    return value


def _guarded(handler: Handler) -> Handler:
    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ControlError as exc:
            return _json({"error": str(exc)}, exc.status)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)

    return run


class _Control:
    def __init__(self, emulator: LineEmulator) -> None:
        self.emu = emulator

    def _account(self, request: web.Request) -> Account:
        try:
            return self.emu.account(request.match_info["channel"])
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc

    async def health(self, request: web.Request) -> web.Response:
        return _json({"ok": True, "accounts": len(self.emu.accounts)})

    async def list_accounts(self, request: web.Request) -> web.Response:
        return _json([a.to_json() for a in self.emu.accounts])

    async def create_account(self, request: web.Request) -> web.Response:
        b = await _body(request)
        account = self.emu.add_account(
            tier=Tier(b.get("tier", "verified")),
            access_token=b.get("accessToken"),
            channel_secret=b.get("channelSecret"),
            channel_id=b.get("channelId"),
            display_name=b.get("displayName", "Emulated Shop"),
            bot_user_id=b.get("botUserId"),
            premium_id=b.get("premiumId"),
            quota=b.get("quota"),
            followers=int(b.get("followers", 0)),
            follower_seed=b.get("followerSeed"),
        )
        return _json(account.to_json(), 201)

    async def get_account(self, request: web.Request) -> web.Response:
        return _json(self._account(request).to_json())

    async def add_followers(self, request: web.Request) -> web.Response:
        account, b = self._account(request), await _body(request)
        if "count" in b:
            added = self.emu.add_followers(account, int(b["count"]), seed=b.get("seed"))
            return _json({"added": len(added), "followers": len(account.followers)})
        profile = self.emu.add_follower(
            account,
            b.get("userId"),
            display_name=b.get("displayName"),
            picture_url=b.get("pictureUrl"),
            status_message=b.get("statusMessage"),
            language=b.get("language"),
        )
        return _json(
            {"added": 1, "profile": profile.to_json(), "followers": len(account.followers)}
        )

    async def list_followers(self, request: web.Request) -> web.Response:
        account = self._account(request)
        include_blocked = request.query.get("includeBlocked") == "true"
        return _json({"userIds": self.emu.follower_ids(account, include_blocked=include_blocked)})

    async def block(self, request: web.Request) -> web.Response:
        account, b = self._account(request), await _body(request)
        unblock = request.match_info["action"] == "unblock"
        for user_id in b.get("userIds", []):
            try:
                (self.emu.unblock if unblock else self.emu.block)(account, user_id)
            except KeyError as exc:
                raise ControlError(400, str(exc.args[0])) from exc
        return _json(account.to_json())

    async def set_quota(self, request: web.Request) -> web.Response:
        account, b = self._account(request), await _body(request)
        if "limit" not in b:
            raise ControlError(400, "limit is required (null for no limit)")
        self.emu.set_quota(account, b["limit"], usage=b.get("usage"))
        return _json(account.quota.to_json())

    async def statistics(self, request: web.Request) -> web.Response:
        """`{"engagement": {"openRate", "clickRate", "playRate", "arrivalHours", "seed"},
        "unitAllowance": n}`, each optional; answers the account's settings."""
        account = self._account(request)
        if request.method == "PUT":
            b = await _body(request)
            given = b.get("engagement")
            engagement = None
            if given is not None:
                merged = {**account.engagement.to_json(), **given}
                engagement = Engagement.from_json(merged)
            allowance = b.get("unitAllowance")
            self.emu.set_engagement(
                account, engagement, unit_allowance=None if allowance is None else int(allowance)
            )
        now = self.emu.clock.time()
        return _json(
            {
                "engagement": account.engagement.to_json(),
                "unitAllowance": account.units.allowance,
                "unitsThisMonth": account.units.used(now),
            }
        )

    async def set_tier(self, request: web.Request) -> web.Response:
        account, b = self._account(request), await _body(request)
        self.emu.set_tier(account, Tier(b["tier"]))
        return _json(account.to_json())

    async def token(self, request: web.Request) -> web.Response:
        account = self._account(request)
        if request.method == "DELETE":
            self.emu.revoke_token(account)
            return _json({"revoked": True})
        b = await _body(request)
        return _json({"accessToken": self.emu.rotate_token(account, b.get("accessToken"))})

    async def issued_tokens(self, request: web.Request) -> web.Response:
        account = self._account(request)
        now = self.emu.clock.time()
        return _json(
            {
                "tokens": [
                    {
                        "accessToken": t.value,
                        "kind": t.kind.value,
                        "expiresIn": max(0, int(t.expires_at - now)),
                        "keyId": t.key_id or None,
                    }
                    for t in self.emu.issued_tokens(account)
                ]
            }
        )

    async def assertion_key(self, request: web.Request) -> web.Response:
        account = self._account(request)
        b = await _body(request)
        key = b.get("publicKey")
        if not isinstance(key, dict):
            raise ControlError(400, "publicKey must be the public half of an RSA JWK")
        try:
            return _json({"kid": self.emu.add_assertion_key(account, key)})
        except ValueError as e:
            raise ControlError(400, str(e)) from None

    async def faults(self, request: web.Request) -> web.Response:
        account = self._account(request) if "channel" in request.match_info else None
        if request.method == "DELETE":
            self.emu.set_faults(None, account)
            return _json({"faults": None})
        faults = Faults.from_json(await _body(request))
        self.emu.set_faults(faults, account)
        return _json({"faults": faults.to_json()})

    async def rates(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        if request.method == "DELETE":
            self.emu.set_rate(endpoint, None)
            return _json({"endpoint": endpoint, "rate": None})
        b = await _body(request)
        rate = Rate(int(b["requests"]), float(b.get("perSeconds", 1.0)))
        self.emu.set_rate(endpoint, rate)
        return _json(
            {
                "endpoint": endpoint,
                "rate": {"requests": rate.requests, "perSeconds": rate.per_seconds},
            }
        )

    async def deliveries(self, request: web.Request) -> web.Response:
        account = self._account(request)
        user_id = request.query.get("userId")
        if user_id is None:
            raise ControlError(400, "userId query parameter is required")
        return _json([d.to_json() for d in self.emu.received(user_id, account)])

    async def delivery_summary(self, request: web.Request) -> web.Response:
        account = self._account(request)
        log = account.deliveries
        repeated = log.positions_received_more_than_once()
        return _json(
            {
                "sends": len(log.sends),
                "totalDeliveries": log.total_deliveries,
                "usersReached": log.users_reached(),
                "usersReachedMoreThanOnce": len(repeated),
                "sampleReachedMoreThanOnce": [
                    account.followers.user_id_at(p) for p in repeated[:20]
                ],
                "quota": account.quota.to_json(),
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        return _json(self.emu.stats.to_json())

    async def webhooks(self, request: web.Request) -> web.Response:
        account, b = self._account(request), await _body(request)
        url = b.get("url")
        if not isinstance(url, str):
            raise ControlError(400, "url is required")
        events = [self._event(account, spec) for spec in b.get("events", [])]
        sender = self.emu.webhook_sender(account)
        if b.get("badSignature"):
            results = [await sender.post(url, events, bad_signature=True)]
        elif events:
            results = await sender.post_batches(url, events, int(b.get("batchSize", len(events))))
        else:
            results = [await sender.connectivity_check(url)]
        return _json(
            {
                "results": [
                    {
                        "status": x.status,
                        "events": x.event_count,
                        "signature": x.signature,
                        "elapsed": x.elapsed,
                        "response": x.response_body,
                    }
                    for x in results
                ]
            }
        )

    def _event(self, account: Account, spec: dict[str, Any]) -> dict[str, Any]:
        kind, user_id = spec.get("type"), spec.get("userId")
        ts, redelivery = spec.get("timestampMs"), bool(spec.get("redelivery", False))
        apply_state = spec.get("applyState", True)
        events = self.emu.events
        if kind == "follow":
            if apply_state:
                return self.emu.follow(account, user_id, timestamp_ms=ts, redelivery=redelivery)
            return events.follow(
                str(user_id),
                is_unblocked=bool(spec.get("isUnblocked")),
                timestamp_ms=ts,
                redelivery=redelivery,
            )
        if not isinstance(user_id, str):
            raise ControlError(400, f"userId is required for {kind} events")
        if kind == "unfollow":
            if apply_state and account.followers.position(user_id) is not None:
                return self.emu.unfollow(account, user_id, timestamp_ms=ts, redelivery=redelivery)
            return events.unfollow(user_id, timestamp_ms=ts, redelivery=redelivery)
        if kind == "message":
            return events.text_message(
                user_id, str(spec.get("text", "")), timestamp_ms=ts, redelivery=redelivery
            )
        if kind == "postback":
            return events.postback(
                user_id,
                str(spec.get("data", "")),
                params=spec.get("params"),
                timestamp_ms=ts,
                redelivery=redelivery,
            )
        raise ControlError(
            400, f"unknown event type {kind!r}; use follow, unfollow, message or postback"
        )

    async def advance_clock(self, request: web.Request) -> web.Response:
        clock = self.emu.clock
        if not isinstance(clock, ManualClock):
            raise ControlError(409, "the emulator runs on the system clock")
        clock.advance(float((await _body(request))["seconds"]))
        return _json({"time": clock.time()})


def add_routes(app: web.Application, emulator: LineEmulator) -> None:
    c = _Control(emulator)
    acc = PREFIX + "/accounts/{channel}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", PREFIX + "/health", c.health),
        ("GET", PREFIX + "/accounts", c.list_accounts),
        ("POST", PREFIX + "/accounts", c.create_account),
        ("GET", acc, c.get_account),
        ("POST", acc + "/followers", c.add_followers),
        ("GET", acc + "/followers", c.list_followers),
        ("POST", acc + "/{action:block|unblock}", c.block),
        ("PUT", acc + "/quota", c.set_quota),
        ("PUT", acc + "/tier", c.set_tier),
        ("GET", acc + "/statistics", c.statistics),
        ("PUT", acc + "/statistics", c.statistics),
        ("POST", acc + "/token", c.token),
        ("DELETE", acc + "/token", c.token),
        ("GET", acc + "/issued-tokens", c.issued_tokens),
        ("POST", acc + "/assertion-keys", c.assertion_key),
        ("PUT", PREFIX + "/faults", c.faults),
        ("DELETE", PREFIX + "/faults", c.faults),
        ("PUT", acc + "/faults", c.faults),
        ("DELETE", acc + "/faults", c.faults),
        ("PUT", PREFIX + "/rates/{endpoint}", c.rates),
        ("DELETE", PREFIX + "/rates/{endpoint}", c.rates),
        ("GET", acc + "/deliveries", c.deliveries),
        ("GET", acc + "/deliveries/summary", c.delivery_summary),
        ("GET", PREFIX + "/stats", c.stats),
        ("POST", acc + "/webhooks", c.webhooks),
        ("POST", PREFIX + "/clock/advance", c.advance_clock),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _guarded(handler))
