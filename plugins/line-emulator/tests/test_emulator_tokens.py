"""Channel access tokens: issued, verified and revoked as channel-access-token.yml says; an issued
token works on the Messaging API until it expires on the emulator's clock or is revoked."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest
from broadcaster_line_emulator import Account, LineEmulator, ManualClock
from broadcaster_line_emulator.conformance import ConformanceRecorder
from cryptography.hazmat.primitives.asymmetric import rsa
from emulator_support import LineApi

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk


def _assertion(key: rsa.RSAPrivateKey, kid: str, channel_id: str, now: float, **claims: Any) -> str:
    payload = {
        "iss": channel_id,
        "sub": channel_id,
        "aud": "https://api.line.me/",
        "exp": int(now) + 30 * 60,
        "token_exp": 60 * 60,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


async def _form(http: aiohttp.ClientSession, path: str, data: dict[str, str]) -> tuple[int, Any]:
    async with http.post(path, data=data) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


async def _bot_info(http: aiohttp.ClientSession, token: str) -> int:
    return (await LineApi(http, token).call("GET", "/v2/bot/info")).status


async def test_short_lived_token_works_until_it_expires(
    http: aiohttp.ClientSession, shop: Account, clock: ManualClock
) -> None:
    status, body = await _form(
        http,
        "/v2/oauth/accessToken",
        {
            "grant_type": "client_credentials",
            "client_id": shop.channel_id,
            "client_secret": shop.channel_secret,
        },
    )

    assert status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 30 * 24 * 3600
    token = body["access_token"]
    assert token != shop.access_token
    assert await _bot_info(http, token) == 200
    status, verified = await _form(http, "/v2/oauth/verify", {"access_token": token})
    assert status == 200 and verified["client_id"] == shop.channel_id
    clock.advance(30 * 24 * 3600 - 1)
    assert await _bot_info(http, token) == 200
    clock.advance(1)
    assert await _bot_info(http, token) == 401
    status, verified = await _form(http, "/v2/oauth/verify", {"access_token": token})
    assert (status, verified["error"]) == (400, "invalid_request")


async def test_short_lived_token_revoked_gets_401_and_revoke_is_idempotent(
    http: aiohttp.ClientSession, shop: Account, emulator: LineEmulator
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": shop.channel_id,
        "client_secret": shop.channel_secret,
    }
    token = (await _form(http, "/v2/oauth/accessToken", form))[1]["access_token"]

    assert (await _form(http, "/v2/oauth/revoke", {"access_token": token}))[0] == 200
    assert await _bot_info(http, token) == 401
    assert (await _form(http, "/v2/oauth/revoke", {"access_token": token}))[0] == 200
    assert emulator.issued_tokens(shop) == []
    assert await _bot_info(http, shop.access_token) == 200  # the long-lived one is untouched


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "{id}"}, "invalid_request"),
        ({"client_id": "{id}", "client_secret": "{secret}"}, "invalid_request"),
        (
            {"grant_type": "password", "client_id": "{id}", "client_secret": "{secret}"},
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "{id}", "client_secret": "nope"},
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "1", "client_secret": "{secret}"},
            "invalid_client",
        ),
    ],
)
async def test_short_lived_token_refused_shapes(
    http: aiohttp.ClientSession, shop: Account, form: dict[str, str], error: str
) -> None:
    filled = {k: v.format(id=shop.channel_id, secret=shop.channel_secret) for k, v in form.items()}

    status, body = await _form(http, "/v2/oauth/accessToken", filled)

    assert (status, body["error"]) == (400, error)
    assert body["error_description"]


async def test_a_json_body_is_refused(http: aiohttp.ClientSession, shop: Account) -> None:
    payload = {"grant_type": "client_credentials", "client_id": shop.channel_id}
    async with http.post("/v2/oauth/accessToken", json=payload) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


async def test_v21_token_by_assertion_verify_revoke_and_key_ids(
    http: aiohttp.ClientSession,
    shop: Account,
    emulator: LineEmulator,
    clock: ManualClock,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    kid = emulator.add_assertion_key(shop, _public_jwk(rsa_key))
    now = clock.time()
    status, body = await _form(
        http,
        "/oauth2/v2.1/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(rsa_key, kid, shop.channel_id, now, token_exp=600),
        },
    )

    assert status == 200
    assert body["expires_in"] == 600 and body["token_type"] == "Bearer" and body["key_id"]
    token = body["access_token"]
    assert await _bot_info(http, token) == 200
    async with http.get("/oauth2/v2.1/verify", params={"access_token": token}) as resp:
        assert resp.status == 200
        verified = await resp.json()
    assert verified["client_id"] == shop.channel_id and verified["expires_in"] == 600
    listing = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(rsa_key, kid, shop.channel_id, now),
    }
    async with http.get("/oauth2/v2.1/tokens/kid", params=listing) as resp:
        assert (await resp.json())["kids"] == [body["key_id"]]

    wrong = {"client_id": shop.channel_id, "client_secret": "nope", "access_token": token}
    status, refused = await _form(http, "/oauth2/v2.1/revoke", wrong)
    assert (status, refused["error"]) == (400, "invalid_client")
    assert await _bot_info(http, token) == 200
    right = {**wrong, "client_secret": shop.channel_secret}
    assert (await _form(http, "/oauth2/v2.1/revoke", right))[0] == 200
    assert await _bot_info(http, token) == 401


async def test_v21_token_expires_with_token_exp(
    http: aiohttp.ClientSession,
    shop: Account,
    emulator: LineEmulator,
    clock: ManualClock,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    kid = emulator.add_assertion_key(shop, _public_jwk(rsa_key))
    assertion = _assertion(rsa_key, kid, shop.channel_id, clock.time(), token_exp=30)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    token = (await _form(http, "/oauth2/v2.1/token", form))[1]["access_token"]

    clock.advance(29)
    assert await _bot_info(http, token) == 200
    clock.advance(1)
    assert await _bot_info(http, token) == 401
    async with http.get("/oauth2/v2.1/verify", params={"access_token": token}) as resp:
        assert resp.status == 400


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "https://example.com/"},
        {"sub": "someone"},
        {"exp": 1},  # long past
        {"exp": 4_000_000_000},  # far more than 30 minutes ahead
        {"token_exp": 31 * 24 * 3600},
        {"kid": "unknown"},
        {"key": "other"},
        {"assertion_type": "urn:something:else"},
    ],
)
async def test_v21_refused_assertions(
    http: aiohttp.ClientSession,
    shop: Account,
    emulator: LineEmulator,
    clock: ManualClock,
    rsa_key: rsa.RSAPrivateKey,
    change: dict[str, Any],
) -> None:
    kid = emulator.add_assertion_key(shop, _public_jwk(rsa_key))
    change = dict(change)
    signer = rsa_key
    if change.pop("key", None):
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = change.pop("kid", kid)
    assertion_type = change.pop("assertion_type", ASSERTION_TYPE)
    assertion = _assertion(signer, kid, shop.channel_id, clock.time(), **change)

    status, body = await _form(
        http,
        "/oauth2/v2.1/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": assertion_type,
            "client_assertion": assertion,
        },
    )

    assert status == 400
    assert body["error"] in {"invalid_client", "invalid_request"} and body["error_description"]
    assert emulator.issued_tokens(shop) == []


async def test_stateless_tokens_by_secret_and_by_assertion_last_fifteen_minutes(
    http: aiohttp.ClientSession,
    shop: Account,
    emulator: LineEmulator,
    clock: ManualClock,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    kid = emulator.add_assertion_key(shop, _public_jwk(rsa_key))
    by_secret = {
        "grant_type": "client_credentials",
        "client_id": shop.channel_id,
        "client_secret": shop.channel_secret,
    }
    by_assertion = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(rsa_key, kid, shop.channel_id, clock.time()),
    }
    tokens = []
    for form in (by_secret, by_assertion):
        status, body = await _form(http, "/oauth2/v3/token", form)
        assert status == 200 and body["expires_in"] == 900 and body["token_type"] == "Bearer"
        tokens.append(body["access_token"])

    # Not revocable through either revoke endpoint.
    await _form(http, "/v2/oauth/revoke", {"access_token": tokens[0]})
    revoke = {"client_id": shop.channel_id, "client_secret": shop.channel_secret}
    await _form(http, "/oauth2/v2.1/revoke", {**revoke, "access_token": tokens[1]})
    for token in tokens:
        assert await _bot_info(http, token) == 200
    clock.advance(900)
    for token in tokens:
        assert await _bot_info(http, token) == 401


async def test_at_most_thirty_short_lived_tokens_are_valid(
    http: aiohttp.ClientSession, shop: Account
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": shop.channel_id,
        "client_secret": shop.channel_secret,
    }
    issued = [
        (await _form(http, "/v2/oauth/accessToken", form))[1]["access_token"] for _ in range(31)
    ]

    assert await _bot_info(http, issued[0]) == 401
    assert await _bot_info(http, issued[1]) == 200
    assert await _bot_info(http, issued[-1]) == 200


async def test_token_exchanges_are_checked_against_the_spec(
    http: aiohttp.ClientSession, shop: Account, conformance: ConformanceRecorder
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": shop.channel_id,
        "client_secret": shop.channel_secret,
    }
    await _form(http, "/v2/oauth/accessToken", form)
    await _form(http, "/v2/oauth/accessToken", {**form, "client_secret": "wrong"})

    assert conformance.checked == 2
    conformance.assert_clean()


def test_assertion_keys_must_be_public_rsa(emulator: LineEmulator, shop: Account) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)

    with pytest.raises(ValueError, match="public half"):
        emulator.add_assertion_key(shop, private)


async def test_control_api_registers_keys_and_lists_issued_tokens(
    http: aiohttp.ClientSession, shop: Account, rsa_key: rsa.RSAPrivateKey, clock: ManualClock
) -> None:
    base = f"/_emulator/accounts/{shop.channel_id}"
    async with http.post(f"{base}/assertion-keys", json={"publicKey": {"kty": "oct"}}) as resp:
        assert resp.status == 400
    async with http.post(
        f"{base}/assertion-keys", json={"publicKey": _public_jwk(rsa_key)}
    ) as resp:
        kid = (await resp.json())["kid"]
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(rsa_key, kid, shop.channel_id, clock.time(), token_exp=90),
    }

    token = (await _form(http, "/oauth2/v2.1/token", form))[1]

    async with http.get(f"{base}/issued-tokens") as resp:
        listed = (await resp.json())["tokens"]
    assert listed == [
        {
            "accessToken": token["access_token"],
            "kind": "v2.1",
            "expiresIn": 90,
            "keyId": token["key_id"],
        }
    ]


async def test_refused_shapes_of_the_other_token_endpoints(
    http: aiohttp.ClientSession,
    shop: Account,
    emulator: LineEmulator,
    clock: ManualClock,
    rsa_key: rsa.RSAPrivateKey,
    conformance: ConformanceRecorder,
) -> None:
    kid = emulator.add_assertion_key(shop, _public_jwk(rsa_key))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _assertion(other, kid, shop.channel_id, clock.time())
    grant = {"grant_type": "client_credentials"}

    answers = [
        await _form(
            http,
            "/oauth2/v3/token",
            {**grant, "client_id": shop.channel_id, "client_secret": "wrong"},
        ),
        await _form(
            http,
            "/oauth2/v3/token",
            {**grant, "client_assertion_type": ASSERTION_TYPE, "client_assertion": forged},
        ),
        await _form(http, "/oauth2/v3/token", {"grant_type": "client_credentials"}),
        await _form(http, "/v2/oauth/verify", {}),
        await _form(http, "/v2/oauth/revoke", {}),
        await _form(http, "/oauth2/v2.1/revoke", {"client_id": shop.channel_id}),
    ]
    async with http.get("/oauth2/v2.1/verify") as resp:
        answers.append((resp.status, await resp.json()))
    listing = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": forged}
    async with http.get("/oauth2/v2.1/tokens/kid", params=listing) as resp:
        answers.append((resp.status, await resp.json()))

    assert [(status, body["error"]) for status, body in answers] == [
        (400, "invalid_client"),
        (400, "invalid_client"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (400, "invalid_client"),
    ]
    assert emulator.issued_tokens(shop) == []
    responses = [v for v in conformance.violations if v.kind == "response"]
    assert not responses, responses
