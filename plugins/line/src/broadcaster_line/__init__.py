"""LINE Messaging API channel for broadcaster: the `line` channel type.

Installing the `broadcaster-line` distribution registers it (entry point `line` in the
`broadcaster` group, `broadcaster_line.plugin`). It sends a merchant's broadcast to their LINE
Official Account's friends with multicast, lists followers and profiles, reads the monthly
quota and authenticates LINE's webhooks.

Credentials (encrypted at rest, never returned or logged)
    ``channel_secret``: the channel secret (Basic settings tab); it signs LINE's webhooks. With
    either ``channel_access_token``: a long-lived channel access token (LINE Developers Console,
    Messaging API tab); or ``channel_id`` (optionally with ``assertion_private_key``, a private
    RSA JWK, and ``assertion_key_id``): the channel then issues short-lived tokens itself,
    keeps them in the core's store, renews them before they expire and revokes them on
    disconnect (``tokens``).

Connecting and the account tier
    ``GET /v2/bot/info`` verifies the token (401: ``CredentialsInvalid``; network trouble or 5xx
    after a few retries: ``ChannelUnavailable``). LINE has no tier field: an account with a
    ``premiumId`` is PREMIUM; otherwise a one-id probe of ``GET /v2/bot/followers/ids`` answers
    200 for a VERIFIED account and 403 for a STANDARD one, since only verified and premium
    accounts may read their follower list. A STANDARD account may not target "all contacts"
    (``AUDIENCE_NOT_ELIGIBLE``) and cannot sync contacts (``ContactsNotListable``): it learns
    them from webhooks.

Limits (``LineChannel.capabilities``)
    Multicast: 500 recipients per request, 200 requests/s, 1-5 messages; text 1-5,000
    characters counted in UTF-16 code units; image URLs HTTPS and at most 2,000 characters.
    ``X-Line-Retry-Key`` (the batch's idempotency key) is remembered by LINE for 24 hours.
    Follower ids and profiles: 2,000 requests/s, paced here at 1,900/s with 50 profile requests
    in flight. LINE counts one quota unit per delivered recipient, whatever the bubble count.

Configuration
    ``BROADCASTER_LINE_API_BASE``: base URL of the Messaging API (default
    ``https://api.line.me``; the emulator's URL in tests and demos). HTTP goes through the
    core's shared ``aiohttp.ClientSession``.

Modules: ``channel`` (``LineChannel``), ``client`` (the HTTP client), ``account`` (connect, tier,
eligibility, quota), ``rules`` (message rules and LINE JSON), ``contacts`` (follower pages and
profiles), ``sending`` (multicast and its outcomes), ``webhook`` (signatures and events),
``retry`` and ``pacing`` (retries and the token bucket), ``tokens`` (short-lived channel access
tokens). The LINE emulator its tests run against
is a distribution of its own, ``broadcaster-line-emulator`` (``plugins/line-emulator/``).
"""
