"""A LINE Messaging API emulator for tests, benchmarks and `broadcaster demo`.

It follows the official OpenAPI spec vendored in `spec/messaging-api.yml` (paths, parameters,
headers, bodies, the `{"message", "details"}` error shape) and LINE's reference for what the
spec leaves out: rate limits, retry keys, quotas and error messages. It is a distribution of its
own (`broadcaster-line-emulator`) and imports neither broadcaster nor its LINE plugin.

Running it
----------
In-process (tests)::

    async with LineEmulator(clock=ManualClock(), observers=[checker]) as emu:
        shop = emu.add_account(tier="verified", followers=10_000, quota=50_000)
        # point the LINE client at emu.base_url with shop.access_token ...
        assert emu.times_received(shop, user_id) == 1

As a process::

    python -m broadcaster_line_emulator --host 127.0.0.1 --port 0 \\
        --token TOKEN --secret SECRET --tier verified --followers 100000 --quota 500000

prints the base URL on its first line, then one JSON line per seeded account; `--account
token=...,secret=...,tier=none,followers=10,quota=100` adds more. It runs until SIGINT/SIGTERM.

Messaging API (all under the base URL, bearer-authenticated by channel access token)
--------------------------------------------------------------------------------------
``POST /v2/bot/message/push|multicast|broadcast``, ``GET /v2/bot/info``,
``GET /v2/bot/followers/ids`` (``limit`` default 300, max 1,000; ``start`` = previous ``next``;
403 for tier "none"), ``GET /v2/bot/profile/{userId}`` (404 "Not found" for unknown or blocked
users), ``GET /v2/bot/message/quota`` and ``/quota/consumption``,
``POST /v2/bot/message/validate/multicast`` (``{"messages": [...]}`` checked as a multicast's:
200 ``{}`` or 400 naming each bad property; nothing sent or counted), ``GET`` and ``PUT
/v2/bot/channel/webhook/endpoint`` (404 "Not found" until a URL is set; ``active`` is the
account's ``webhook_active``, on by default; a URL must be HTTPS and at most 500 characters, or
plain HTTP to a loopback host for local tests), ``POST /v2/bot/channel/webhook/test`` (posts a
signed webhook with no events to the given ``endpoint`` or the one set, and answers ``success``
(status 200), ``timestamp``, ``statusCode`` (0 when nothing answered, -1 after a 10 s timeout),
``reason`` and ``detail``; 400 when no URL is set).
Statistics per unit (aggregation.py): ``customAggregationUnits`` on push and multicast (one
name, ``^[a-zA-Z0-9_]{1,30}$``; a name new this month past the channel's allowance, 1,000 by
default, is a 400 naming ``customAggregationUnits``), ``GET /v2/bot/message/aggregation/info``
and ``/list`` (``limit`` default and max 100, ``start`` = previous ``next``), and ``GET
/v2/bot/insight/message/event/aggregation`` (``customAggregationUnit``, ``from`` and ``to`` as
JST ``yyyyMMdd`` at most 30 days apart, else 400 with LINE's all-null body; 60 requests an
hour): seeded opens, clicks on the URI actions of the messages, and plays of video and audio,
arriving over hours after each send, frozen after 14 days, null below 20.

- 401 for a missing or unknown token, with LINE's messages.
- 400 in LINE's shape for bad bodies: 1-5 messages, text 1-5,000 UTF-16 code units, image and
  video URLs HTTPS and at most 2,000 characters, the limits of emoji, imagemap, template, flex
  and quick replies (`validation`), 1-500 multicast recipients; a malformed id in
  ``to`` is named as ``to[i]`` in the message and in ``details[].property``.
- Multicast to blocked users, non-friends or repeated ids answers 200 but delivers (and counts)
  nothing for them; push to an unknown user is 400 "Failed to send messages". If a request fails,
  nobody receives anything.
- ``X-Line-Retry-Key`` (push, multicast, broadcast; a UUID, else 400; 400 on other endpoints): an
  accepted key is answered for 24 hours with 409 "The retry key is already accepted" and
  ``x-line-accepted-request-id``, without delivering again. Every response has
  ``x-line-request-id``.
- Token buckets per channel and endpoint at LINE's rates (multicast 200/s, broadcast 60/h,
  others 2,000/s) answer 429 "The API rate limit has been exceeded. Try again later."; a send
  that would pass the monthly limit answers 429 "You have reached your monthly limit.".

Channel access tokens (``spec/channel-access-token.yml``, form-encoded, no bearer token)
------------------------------------------------------------------------------------------
``POST /v2/oauth/accessToken`` (channel id and secret: a short-lived token, 30 days),
``POST /v2/oauth/verify`` and ``/v2/oauth/revoke``; ``POST /oauth2/v2.1/token`` (a JWT assertion
signed RS256 by a key registered with ``emu.add_assertion_key``: ``token_exp`` seconds, at most
30 days), ``GET /oauth2/v2.1/verify``, ``POST /oauth2/v2.1/revoke`` (channel id and secret),
``GET /oauth2/v2.1/tokens/kid``; ``POST /oauth2/v3/token`` (stateless, 15 minutes, by assertion
or by channel id and secret). Errors are ``{"error", "error_description"}`` with 400. An issued
token works on the Messaging API until it expires on the emulator's clock or is revoked, then
gets 401 (tokens.py).

Control API (``/_emulator/``, JSON; ``{channel}`` is the channel id)
------------------------------------------------------------------
- ``GET /_emulator/health``: liveness and account count.
- ``GET /_emulator/accounts``: every account, credentials included (it is a test double).
- ``POST /_emulator/accounts``: create one from ``tier``, ``accessToken``, ``channelSecret``,
  ``channelId``, ``displayName``, ``quota``, ``followers``, ``followerSeed``, ``premiumId``.
- ``GET /_emulator/accounts/{channel}``: one account.
- ``POST /_emulator/accounts/{channel}/followers``: ``{"count", "seed"}`` to seed many, or one
  profile ``{"userId", "displayName", "pictureUrl", "statusMessage", "language"}``.
- ``GET /_emulator/accounts/{channel}/followers``: follower ids (``?includeBlocked=true``).
- ``POST /_emulator/accounts/{channel}/block`` and ``.../unblock``: ``{"userIds": [...]}``.
- ``PUT /_emulator/accounts/{channel}/quota``: ``{"limit": n or null, "usage": n}``.
- ``PUT /_emulator/accounts/{channel}/tier``: ``{"tier": "none" | "verified" | "premium"}``.
- ``GET`` and ``PUT /_emulator/accounts/{channel}/statistics``: ``{"engagement": {"openRate",
  "clickRate", "playRate", "arrivalHours", "seed"}, "unitAllowance": n}`` (each optional);
  answers the settings and this month's unit names.
- ``POST /_emulator/accounts/{channel}/token``: rotate (optional ``{"accessToken"}``);
  ``DELETE`` revokes.
- ``GET /_emulator/accounts/{channel}/issued-tokens``: the valid tokens issued through the
  OAuth endpoints (``accessToken``, ``kind``, ``expiresIn``, ``keyId``).
- ``POST /_emulator/accounts/{channel}/assertion-keys``: ``{"publicKey": RSA JWK}`` registers an
  assertion signing key; answers its ``{"kid"}``.
- ``PUT /_emulator/faults`` and ``PUT /_emulator/accounts/{channel}/faults``: a ``Faults``
  object (below); ``DELETE`` clears.
- ``PUT /_emulator/rates/{endpoint}``: ``{"requests", "perSeconds"}``; ``DELETE`` lifts it.
- ``GET /_emulator/accounts/{channel}/deliveries?userId=U...``: what one user received.
- ``GET /_emulator/accounts/{channel}/deliveries/summary``: sends, deliveries, users reached,
  users reached more than once.
- ``GET /_emulator/stats``: requests by channel, endpoint and status; 429s from buckets and the
  quota; injected faults; per-second histograms, peak rates, when the first and last
  accepted requests came, the longest pause between two accepted requests (between their
  answers, and between their arrivals), and the most requests in progress at once.
- ``POST /_emulator/accounts/{channel}/webhooks``: ``{"url", "events": [{"type": "follow" |
  "unfollow" | "message" | "postback", "userId", "text", "data", "params", "timestampMs",
  "redelivery", "applyState"}], "batchSize", "badSignature"}``; no events sends LINE's empty
  connectivity check. Follow and unfollow also change the account's state unless
  ``applyState`` is false.
- ``POST /_emulator/clock/advance``: ``{"seconds"}``, when running on a ``ManualClock``.

Faults
------
``Faults(latency=, spike_probability=, spike_latency=, error_rate=, error_statuses=(500, 502,
503), error_phase="before"|"after", reset_rate=, reset_phase=, burst_429=, endpoints=, seed=)``,
set with ``emu.set_faults(faults, account=None)`` or the control API (camelCase keys accepted).
Latency is added to every request, spikes to a random share. An error or a reset (connection
closed without a response) in phase "after" strikes once the request has been accepted and
delivered, which is what retry keys are for. ``burst_429`` answers the next N requests with the
rate-limit 429. Decisions come from a random stream seeded by ``seed``, so a run replays exactly.

Observing
---------
``observers=[callable]`` (or ``emu.add_observer``) receive an :class:`Exchange` for every
Messaging API request: method, path, query, headers and body, then status (None for a reset),
response headers and body. ``broadcaster_line_emulator.conformance`` checks these against the
vendored OpenAPI spec, and ``broadcaster_line_emulator.testing`` has pytest fixtures that attach
it (both need the ``testing`` extra).

Records and statistics
----------------------
``emu.received(user_id)`` lists :class:`Delivery` records (request id, retry key, messages) in
order; ``account.deliveries`` keeps each send once with a compact array of recipient positions
and per-follower counts (``positions_received_more_than_once()``), so a million recipients stay
cheap. Followers seeded with ``add_followers(account, n, seed=)`` cost no memory per follower:
ids come from an invertible mix of (seed, index) and profiles are derived from the id. The seed
defaults to the channel id, so accounts do not share followers unless given the same seed.
``emu.stats`` counts requests by endpoint and status, 429s from the buckets
(``rate_limited``) and the quota (``quota_rejected``), injected faults, and keeps per-second
histograms and the peak rate in any one-second window (``peak_rate("multicast")``), and the
most requests in progress at once, of one channel or of all (``most_in_progress("multicast")``).

Webhooks
--------
``emu.events`` builds follow, unfollow, text message and postback events per webhook.yml;
``emu.follow(account)`` / ``emu.unfollow(account, user_id)`` also change the account's state.
``emu.webhook_sender(account).post(url, events, bad_signature=False)`` signs the raw body with
the channel secret (``x-line-signature``), ``post_batches(url, events, batch_size,
concurrency=1)`` sends several events per request (overlapping requests if ``concurrency`` > 1)
and ``connectivity_check`` sends LINE's empty ``events`` request.
"""

from .aggregation import Engagement
from .clock import Clock, ManualClock, SystemClock
from .deliveries import Delivery, DeliveryLog, SendRecord
from .emulator import LineEmulator
from .faults import Faults, Phase
from .followers import FollowerRegistry, Profile
from .ratelimit import DEFAULT_RATES, Rate
from .runtime import Exchange, Observer
from .state import Account, IssuedToken, Quota, Tier, TokenKind
from .stats import Stats
from .webhooks import EventFactory, WebhookResult, WebhookSender, sign, verify

__all__ = [
    "DEFAULT_RATES",
    "Account",
    "Clock",
    "Delivery",
    "DeliveryLog",
    "Engagement",
    "EventFactory",
    "Exchange",
    "Faults",
    "FollowerRegistry",
    "IssuedToken",
    "LineEmulator",
    "ManualClock",
    "Observer",
    "Phase",
    "Profile",
    "Quota",
    "Rate",
    "SendRecord",
    "Stats",
    "SystemClock",
    "Tier",
    "TokenKind",
    "WebhookResult",
    "WebhookSender",
    "sign",
    "verify",
]
