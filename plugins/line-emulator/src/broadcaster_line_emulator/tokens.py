"""Channel access tokens LINE issues on request (spec/channel-access-token.yml), and the
endpoints that issue, verify and revoke them.

Four kinds of token reach the Messaging API endpoints:

- the account's long-lived token (`Account.access_token`, made with the account);
- short-lived tokens, `POST /v2/oauth/accessToken` with the channel id and secret: valid for
  30 days, revocable (`POST /v2/oauth/revoke`), verifiable (`POST /v2/oauth/verify`); at most
  30 valid at once per channel (issuing one more revokes the oldest);
- v2.1 tokens, `POST /oauth2/v2.1/token` with a JWT assertion signed by one of the channel's
  assertion signing keys (registered with `LineEmulator.add_assertion_key`): valid for the
  JWT's `token_exp` seconds (at most 30 days), revocable with the channel id and secret
  (`POST /oauth2/v2.1/revoke`), verifiable (`GET /oauth2/v2.1/verify`), their key ids listed
  by `GET /oauth2/v2.1/tokens/kid`; at most 30 valid at once per channel;
- stateless tokens, `POST /oauth2/v3/token` with either a JWT assertion or the channel id and
  secret: valid for 15 minutes, never revocable.

An issued token is accepted by the Messaging API until it expires (on the emulator's clock) or
is revoked; afterwards it gets 401, as LINE answers for any token it does not know. The
endpoints answer errors with the spec's `ErrorResponse`: `{"error", "error_description"}`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt
from aiohttp import web

from . import responses as r
from .runtime import Exchange, Runtime
from .state import Account, IssuedToken, TokenKind

STATELESS_LIFETIME = 15 * 60
SHORT_LIVED_LIFETIME = 30 * 24 * 60 * 60
V21_MAX_LIFETIME = 30 * 24 * 60 * 60
ASSERTION_MAX_LIFETIME = 30 * 60  # a JWT assertion's exp: at most 30 minutes after iat
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUDIENCE = "https://api.line.me/"
FORM = "application/x-www-form-urlencoded"
SCOPE = "profile chat_message.write"


def account_for_token(runtime: Runtime, token: str) -> Account | None:
    """The account a bearer token acts for: its long-lived token, or a valid issued one."""
    account = runtime.directory.by_token(token)
    if account is not None:
        return account
    issued = runtime.tokens.valid(token, runtime.clock.time())
    return None if issued is None else runtime.directory.by_channel(issued.channel_id)


# -- the endpoints ----------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _error(status: int, error: str, description: str, request_id: str) -> web.Response:
    return r.ok({"error": error, "error_description": description}, request_id, status=status)


def _form(request: web.Request, body: bytes) -> dict[str, str]:
    if request.content_type != FORM:
        raise _Refused("invalid_request", f"the content type must be {FORM}")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise _Refused("invalid_request", "the request body is not form-encoded") from None
    return dict(pairs)


def _required(form: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not form.get(n)]
    if missing:
        listed = ", ".join(missing)
        raise _Refused("invalid_request", f"some parameters missed or invalid: {listed}")
    return [form[n] for n in names]


def _grant(form: Mapping[str, str]) -> None:
    grant = form.get("grant_type", "")
    if not grant:
        raise _Refused("invalid_request", "some parameters missed or invalid: grant_type")
    if grant != GRANT_TYPE:
        raise _Refused("unsupported_grant_type", f"unsupported grant_type: {grant}")


def _client(runtime: Runtime, client_id: str, client_secret: str) -> Account:
    account = runtime.directory.by_channel(client_id)
    if account is None:
        raise _Refused("invalid_client", "invalid client_id")
    if client_secret != account.channel_secret:
        raise _Refused("invalid_client", "invalid client_secret")
    return account


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return jwt.get_unverified_header(assertion), jwt.decode(
            assertion, options={"verify_signature": False}
        )
    except jwt.PyJWTError:
        raise _Refused("invalid_request", "invalid client_assertion: not a JWT") from None


def _asserted(runtime: Runtime, form: Mapping[str, str]) -> tuple[Account, dict[str, Any], str]:
    """Check a JWT assertion: RS256, signed by a key registered for its `iss` channel, `iss`
    and `sub` the channel id, `aud` https://api.line.me/, `exp` in the future and at most 30
    minutes ahead. Returns the account, the claims and the key id."""
    assertion_type, assertion = _required(form, "client_assertion_type", "client_assertion")
    if assertion_type != ASSERTION_TYPE:
        raise _Refused("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    header, claims = _unverified(assertion)
    channel_id = str(claims.get("iss", ""))
    account = runtime.directory.by_channel(channel_id)
    if account is None:
        raise _Refused("invalid_client", "invalid client_id")
    kid = str(header.get("kid", ""))
    public = runtime.tokens.assertion_keys.get(channel_id, {}).get(kid)
    if public is None:
        raise _Refused("invalid_client", "invalid kid")
    if header.get("alg") != "RS256":
        raise _Refused("invalid_request", "invalid client_assertion: alg must be RS256")
    now = runtime.clock.time()
    try:
        key = jwt.PyJWK(public, "RS256")
        verified = jwt.decode(
            assertion,
            key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=channel_id,
            options={"require": ["iss", "sub", "aud", "exp"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise _Refused("invalid_client", f"invalid client_assertion: {exc}") from None
    exp = verified["exp"]
    if str(verified["sub"]) != channel_id:
        raise _Refused("invalid_client", "invalid client_assertion: sub must be the channel id")
    if not isinstance(exp, int) or exp <= now:
        raise _Refused("invalid_client", "invalid client_assertion: expired")
    if exp > now + ASSERTION_MAX_LIFETIME + 1:
        raise _Refused("invalid_client", "invalid client_assertion: exp is too far ahead")
    return account, verified, kid


def _new_value(runtime: Runtime, kind: TokenKind) -> str:
    raw = runtime.ids.access_token()
    if kind is TokenKind.SHORT_LIVED:
        return raw
    # v2.1 and stateless tokens are JWT-shaped opaque strings ("eyJhbGciOiJIUz....").
    head = base64.urlsafe_b64encode(b'{"alg":"HS256"}').decode().rstrip("=")
    return f"{head}.{raw.replace('+', '-').replace('/', '_').rstrip('=')}"


def _issue(
    runtime: Runtime, account: Account, kind: TokenKind, lifetime: int, key_id: str = ""
) -> IssuedToken:
    now = runtime.clock.time()
    token = IssuedToken(
        _new_value(runtime, kind), account.channel_id, kind, now, now + lifetime, key_id
    )
    runtime.tokens.add(token, now)
    return token


def issue_short_lived(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    form = _form(request, body)
    _grant(form)
    client_id, client_secret = _required(form, "client_id", "client_secret")
    account = _client(runtime, client_id, client_secret)
    token = _issue(runtime, account, TokenKind.SHORT_LIVED, SHORT_LIVED_LIFETIME)
    return {"access_token": token.value, "expires_in": SHORT_LIVED_LIFETIME, "token_type": "Bearer"}


def issue_stateless(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    form = _form(request, body)
    _grant(form)
    if "client_assertion" in form or "client_assertion_type" in form:
        account, _, _ = _asserted(runtime, form)
    else:
        client_id, client_secret = _required(form, "client_id", "client_secret")
        account = _client(runtime, client_id, client_secret)
    token = _issue(runtime, account, TokenKind.STATELESS, STATELESS_LIFETIME)
    return {"token_type": "Bearer", "access_token": token.value, "expires_in": STATELESS_LIFETIME}


def issue_v21(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    form = _form(request, body)
    _grant(form)
    account, claims, _ = _asserted(runtime, form)
    lifetime = claims.get("token_exp", V21_MAX_LIFETIME)
    if not isinstance(lifetime, int) or not 1 <= lifetime <= V21_MAX_LIFETIME:
        raise _Refused(
            "invalid_request", f"token_exp must be between 1 and {V21_MAX_LIFETIME} seconds"
        )
    key_id = base64.urlsafe_b64encode(runtime.ids.quote_token()[:16].encode()).decode()[:22]
    token = _issue(runtime, account, TokenKind.V2_1, lifetime, key_id)
    return {
        "access_token": token.value,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "key_id": token.key_id,
    }


def _verified(runtime: Runtime, value: str, kinds: frozenset[TokenKind]) -> dict[str, Any]:
    now = runtime.clock.time()
    account = runtime.directory.by_token(value)
    if account is not None and TokenKind.SHORT_LIVED in kinds:  # long-lived: v2 verify only
        return {"client_id": account.channel_id, "expires_in": 10 * 365 * 86400, "scope": SCOPE}
    issued = runtime.tokens.valid(value, now)
    if issued is None or issued.kind not in kinds:
        raise _Refused("invalid_request", "invalid access token")
    return {
        "client_id": issued.channel_id,
        "expires_in": max(0, int(issued.expires_at - now)),
        "scope": SCOPE,
    }


def verify_v2(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    (value,) = _required(_form(request, body), "access_token")
    return _verified(runtime, value, frozenset({TokenKind.SHORT_LIVED}))


def verify_v21(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    (value,) = _required(request.query, "access_token")
    return _verified(runtime, value, frozenset({TokenKind.V2_1}))


def revoke_v2(runtime: Runtime, request: web.Request, body: bytes) -> None:
    (value,) = _required(_form(request, body), "access_token")
    account = runtime.directory.by_token(value)
    if account is not None:  # a long-lived token: the channel has none until it issues another
        runtime.directory.revoke_token(account)
        return
    issued = runtime.tokens.by_value.get(value)
    if issued is not None and issued.kind is TokenKind.SHORT_LIVED:
        runtime.tokens.revoke(value)
    # An unknown or expired token is no error: it is not valid afterwards either way.


def revoke_v21(runtime: Runtime, request: web.Request, body: bytes) -> None:
    form = _form(request, body)
    client_id, client_secret, value = _required(form, "client_id", "client_secret", "access_token")
    account = _client(runtime, client_id, client_secret)
    issued = runtime.tokens.by_value.get(value)
    if (
        issued is not None
        and issued.kind is TokenKind.V2_1
        and issued.channel_id == account.channel_id
    ):
        runtime.tokens.revoke(value)


def key_ids(runtime: Runtime, request: web.Request, body: bytes) -> dict[str, Any]:
    account, _, _ = _asserted(runtime, request.query)
    now = runtime.clock.time()
    active = runtime.tokens.active(account.channel_id, TokenKind.V2_1, now)
    return {"kids": [t.key_id for t in active]}


@dataclass(frozen=True, slots=True)
class OAuthEndpoint:
    name: str
    method: str
    path: str
    handler: Any  # (runtime, request, body) -> JSON body, or None for an empty 200


OAUTH_ENDPOINTS: tuple[OAuthEndpoint, ...] = (
    OAuthEndpoint("issue_stateless_token", "POST", "/oauth2/v3/token", issue_stateless),
    OAuthEndpoint("issue_token_v2_1", "POST", "/oauth2/v2.1/token", issue_v21),
    OAuthEndpoint("verify_token_v2_1", "GET", "/oauth2/v2.1/verify", verify_v21),
    OAuthEndpoint("revoke_token_v2_1", "POST", "/oauth2/v2.1/revoke", revoke_v21),
    OAuthEndpoint("token_key_ids_v2_1", "GET", "/oauth2/v2.1/tokens/kid", key_ids),
    OAuthEndpoint("issue_short_lived_token", "POST", "/v2/oauth/accessToken", issue_short_lived),
    OAuthEndpoint("verify_token", "POST", "/v2/oauth/verify", verify_v2),
    OAuthEndpoint("revoke_token", "POST", "/v2/oauth/revoke", revoke_v2),
)


async def serve(runtime: Runtime, endpoint: OAuthEndpoint, request: web.Request) -> web.Response:
    """One OAuth request: the answer, statistics and observers (no bearer token, no rate limit,
    no retry keys). Injected server errors apply as to any endpoint."""
    body = await request.read()
    request_id = runtime.ids.request_id()
    decision = runtime.decide(endpoint.name, None)
    response: web.Response
    if decision.error_status is not None:  # in this spec's error shape
        status = decision.error_status
        message = r.SERVER_ERRORS.get(status, "Server Error")
        response = _error(status, "server_error", message, request_id)
    else:
        try:
            answer = endpoint.handler(runtime, request, body)
        except _Refused as refused:
            response = _error(refused.status, refused.error, refused.description, request_id)
        else:
            if answer is None:
                response = web.Response(status=200, headers={r.REQUEST_ID_HEADER: request_id})
            else:
                response = r.ok(answer, request_id)
    channel_id = None
    accepted = response.status == 200
    runtime.stats.record(channel_id, endpoint.name, response.status, accepted=accepted)
    if runtime.observers:
        payload = response.body
        runtime.notify(
            Exchange(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=body,
                status=response.status,
                response_headers=response.headers,
                response_body=payload if isinstance(payload, bytes) else b"",
                endpoint=endpoint.name,
                channel_id=channel_id,
                request=request,
                response=response,
            )
        )
    return response
