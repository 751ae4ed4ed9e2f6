"""Short-lived channel access tokens the channel issues for itself, from the channel id and
secret (and optionally an assertion signing key), instead of a long-lived token the merchant
pastes in.

Two ways to issue one, as LINE documents them:

- `SecretIssuer`: `POST /v2/oauth/accessToken` with the channel id and secret; the token lasts
  30 days; revoked with `POST /v2/oauth/revoke`.
- `AssertionIssuer`: `POST /oauth2/v2.1/token` with a JWT signed (RS256) by the channel's
  assertion signing key (the private JWK registered in the LINE Developers Console, and its key
  id); the token lasts `BROADCASTER_LINE_TOKEN_LIFETIME` seconds (at most and by default 30
  days); revoked with `POST /oauth2/v2.1/revoke` (channel id and secret).

`TokenKeeper` gives the LINE client a token that is not due for renewal: the current one, or
through the core's store (`ChannelRuntime.credentials`: sealed, shared by replicas, one replica
renews at a time) a renewed one. A token is due `BROADCASTER_LINE_TOKEN_RENEW_MARGIN` seconds
before it expires (default one day; at most half its lifetime). A token LINE refuses (401) is
renewed on the core's request (`renew_refused`).

The token a renewal replaces is revoked by the process that renewed, `REVOKE_DELAY` seconds
later: calls under way with it end meanwhile, and other replicas move to its successor at their
next call (or when LINE refuses it). So a channel holds one token of ours at a time, plus one
for a moment after each renewal, not one per renewal until each expires: LINE allows 30 valid
v2.1 tokens per channel (and then refuses to issue more) and 30 short-lived ones (and then
revokes the oldest, which may be another tool's of the same channel). A token issued for a
renewal that another replica's won (its token stored first) is revoked at once: nothing uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt

from broadcaster.channels import (
    ChannelUnavailable,
    CredentialsInvalid,
    IssuedCredential,
    IssuedCredentials,
)
from broadcaster_line.client import LineClient, LineReply, is_header_safe
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

RENEW_MARGIN_ENV = "BROADCASTER_LINE_TOKEN_RENEW_MARGIN"
LIFETIME_ENV = "BROADCASTER_LINE_TOKEN_LIFETIME"
DEFAULT_RENEW_MARGIN = 24 * 60 * 60
MAX_LIFETIME = 30 * 24 * 60 * 60  # LINE's limit for v2.1 tokens
ASSERTION_SECONDS = 30 * 60  # how long a JWT assertion is valid (LINE's maximum)
# Seconds a token replaced by a renewal stays valid before this process revokes it: longer than
# a call to LINE may take (the shared HTTP session's total timeout is 30 s).
REVOKE_DELAY = 120.0
AUDIENCE = "https://api.line.me/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFUSED_ADVICE = (
    "LINE refused to issue a channel access token with this channel's credentials. Check the "
    "channel id and channel secret (Basic settings tab of the LINE Developers Console) and, if "
    "given, the assertion signing key and its key id, and connect the channel again."
)


def _seconds(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CredentialsInvalid(f"{name} must be a whole number of seconds") from None
    if not 1 <= value <= maximum:
        raise CredentialsInvalid(f"{name} must be between 1 and {maximum} seconds")
    return value


def renew_margin(env: Mapping[str, str]) -> int:
    return _seconds(env, RENEW_MARGIN_ENV, DEFAULT_RENEW_MARGIN, MAX_LIFETIME)


def token_lifetime(env: Mapping[str, str]) -> int:
    return _seconds(env, LIFETIME_ENV, MAX_LIFETIME, MAX_LIFETIME)


def _now() -> datetime:
    return datetime.now(UTC)


class Issuer(Protocol):
    async def issue(self, client: LineClient, margin: int) -> IssuedCredential: ...

    async def revoke(self, client: LineClient, token: str) -> None: ...


def _credential(reply: LineReply, margin: int, what: str) -> IssuedCredential:
    body = reply.body if isinstance(reply.body, dict) else {}
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not token or not isinstance(expires_in, int):
        raise ChannelUnavailable(f"LINE's answer to {what} had no access_token or expires_in")
    if not is_header_safe(token):
        raise ChannelUnavailable(f"LINE's answer to {what} had an unusable access_token")
    key_id = body.get("key_id")
    return timed(token, _now(), expires_in, margin, key_id if isinstance(key_id, str) else "")


def timed(
    value: str, now: datetime, expires_in: int, margin: int, key_id: str = ""
) -> IssuedCredential:
    """A token issued `now` for `expires_in` seconds, due for renewal `margin` seconds before it
    expires, or halfway through its life if that comes first."""
    lifetime = max(1, expires_in)
    ahead = min(float(margin), lifetime / 2)
    return IssuedCredential(
        value=value,
        issue_time=now,
        renew_time=now + timedelta(seconds=lifetime - ahead),
        expire_time=now + timedelta(seconds=lifetime),
        key_id=key_id,
    )


async def _post(
    client: LineClient, path: str, form: dict[str, str], what: str, retry: RetryPolicy
) -> LineReply:
    async def call() -> LineReply:
        return await client.post_form(path, form)

    reply = await call_with_retries(call, what, retry)
    if reply.status == 400 and isinstance(reply.body, dict):
        error = reply.body.get("error")
        if error in {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_request"}:
            detail = reply.body.get("error_description") or error
            raise CredentialsInvalid(f"{REFUSED_ADVICE} (LINE: {detail})")
    if reply.status in (401, 403):
        raise CredentialsInvalid(REFUSED_ADVICE)
    return reply


class SecretIssuer:
    """Short-lived tokens (30 days) from the channel id and secret."""

    def __init__(self, channel_id: str, secret: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._id = channel_id
        self._secret = secret
        self._retry = retry

    async def issue(self, client: LineClient, margin: int) -> IssuedCredential:
        what = "issuing a channel access token"
        form = {"grant_type": "client_credentials", "client_id": self._id}
        form["client_secret"] = self._secret
        reply = await _post(client, "v2/oauth/accessToken", form, what, self._retry)
        if not reply.ok:
            raise ChannelUnavailable(f"LINE answered {reply.status} while {what}")
        return _credential(reply, margin, what)

    async def revoke(self, client: LineClient, token: str) -> None:
        what = "revoking a channel access token"
        reply = await _post(client, "v2/oauth/revoke", {"access_token": token}, what, self._retry)
        if not reply.ok:
            raise ChannelUnavailable(f"LINE answered {reply.status} while {what}")


class AssertionIssuer:
    """v2.1 tokens from a JWT assertion signed with the channel's assertion signing key."""

    def __init__(
        self,
        channel_id: str,
        secret: str,
        private_jwk: str,
        key_id: str,
        lifetime: int,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._id = channel_id
        self._secret = secret
        self._key = load_private_key(private_jwk)
        self._kid = key_id
        self._lifetime = lifetime
        self._retry = retry

    def assertion(self, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self._id,
            "sub": self._id,
            "aud": AUDIENCE,
            "exp": issued + ASSERTION_SECONDS,
            "token_exp": self._lifetime,
        }
        headers = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    async def issue(self, client: LineClient, margin: int) -> IssuedCredential:
        what = "issuing a channel access token"
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        reply = await _post(client, "oauth2/v2.1/token", form, what, self._retry)
        if not reply.ok:
            raise ChannelUnavailable(f"LINE answered {reply.status} while {what}")
        return _credential(reply, margin, what)

    async def revoke(self, client: LineClient, token: str) -> None:
        what = "revoking a channel access token"
        form = {"client_id": self._id, "client_secret": self._secret, "access_token": token}
        reply = await _post(client, "oauth2/v2.1/revoke", form, what, self._retry)
        if not reply.ok:
            raise ChannelUnavailable(f"LINE answered {reply.status} while {what}")


def load_private_key(private_jwk: str) -> Any:
    """The signing key of a private RSA JWK (JSON); CredentialsInvalid if it is not one."""
    problem = (
        "the assertion signing key must be the private RSA key as a JWK (JSON with kty RSA "
        "and the private members), as made for the LINE Developers Console"
    )
    try:
        parsed = json.loads(private_jwk)
    except ValueError:
        raise CredentialsInvalid(problem) from None
    if not isinstance(parsed, dict) or parsed.get("kty") != "RSA" or "d" not in parsed:
        raise CredentialsInvalid(problem)
    try:
        return jwt.PyJWK(parsed, "RS256").key
    except (jwt.PyJWTError, ValueError, TypeError):
        raise CredentialsInvalid(problem) from None


class MemoryCredentials:
    """Where the token is kept when the core lends no store (tests of the plugin alone)."""

    def __init__(self) -> None:
        self.held: IssuedCredential | None = None

    async def current(self) -> IssuedCredential | None:
        return self.held

    async def renew(
        self,
        issue: Callable[[], Awaitable[IssuedCredential]],
        *,
        refused: str | None = None,
    ) -> IssuedCredential:
        held = self.held
        if held is not None and held.value != refused and held.renew_time > _now():
            return held
        self.held = await issue()
        return self.held


class TokenKeeper:
    """Keeps the client's token one that is not due for renewal."""

    def __init__(
        self,
        client: LineClient,
        issuer: Issuer,
        store: IssuedCredentials,
        margin: int,
        *,
        revoke_delay: float | None = None,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._store = store
        self._margin = margin
        self._revoke_delay = REVOKE_DELAY if revoke_delay is None else revoke_delay
        self._current: IssuedCredential | None = None
        self._lock = asyncio.Lock()
        self.last_refused: str | None = None  # the token of the last send LINE refused
        self._revoking: set[asyncio.Task[None]] = set()

    async def _renew(self, refused: str | None = None) -> IssuedCredential:
        """A token not due (nor `refused`) through the store; the token a renewal made here
        replaced is revoked later, one issued here that was not stored at once."""
        issued: list[tuple[IssuedCredential | None, IssuedCredential]] = []

        async def issue() -> IssuedCredential:
            # The store calls it with the renewal its own (no other replica stores one
            # meanwhile, unless this one's lease runs out): what it holds now is what the new
            # token replaces.
            replaced = await self._store.current()
            new = await self._issuer.issue(self._client, self._margin)
            issued.append((replaced, new))
            return new

        held = await self._store.renew(issue, refused=refused)
        for replaced, new in issued:
            if held.value != new.value:  # another replica's renewal was stored
                self._revoke_later(new.value, 0.0)
            elif replaced is not None and replaced.value != new.value:
                self._revoke_later(replaced.value, self._revoke_delay)
        return held

    def _revoke_later(self, token: str, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._revoke_replaced(token, delay), name="revoke a replaced channel access token"
        )
        self._revoking.add(task)
        task.add_done_callback(self._revoking.discard)

    async def _revoke_replaced(self, token: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._issuer.revoke(self._client, token)
        except (ChannelUnavailable, CredentialsInvalid) as e:
            log.warning(
                "could not revoke a replaced channel access token (it expires by itself): %s", e
            )

    def _use(self, credential: IssuedCredential) -> None:
        self._current = credential
        self._client.set_token(credential.value)

    def _fresh(self) -> bool:
        current = self._current
        return current is not None and current.renew_time > _now()

    def _refused(self) -> bool:
        return self.last_refused is not None and self._client.token == self.last_refused

    async def fresh(self) -> None:
        """Before a call: a token that is not due (read, or renewed, through the store), and
        not one LINE refused (a renewal that could not be made then is made now)."""
        if self._fresh() and not self._refused():
            return
        async with self._lock:
            if self._refused():
                self._use(await self._renew(refused=self.last_refused))
            elif not self._fresh():
                self._use(await self._renew())

    async def renew_refused(self) -> bool:
        """LINE refused the token of a send: True once the client has another one."""
        refused = self.last_refused or self._client.token
        async with self._lock:
            if self._current is not None and self._current.value != refused:
                return True  # renewed already, by another batch
            self._use(await self._renew(refused=refused))
            return self._client.token != refused

    async def revoke(self) -> None:
        current = await self._store.current()
        if current is not None:
            await self._issuer.revoke(self._client, current.value)
