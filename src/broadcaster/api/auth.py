"""Authenticating a call by its `authorization: Bearer <token>` metadata.

The table of tokens comes from BROADCASTER_AUTH_TOKENS (parsed by broadcaster.config). A caller
is labelled `token#N` in logs, never by the token itself.
"""

from __future__ import annotations

from broadcaster.domain.auth import Caller, TokenTable
from broadcaster.domain.errors import Unauthenticated
from broadcaster.domain.reasons import Reason


def authenticate(tokens: TokenTable, authorization: str | None) -> Caller:
    """The caller whose token the metadata carries; Unauthenticated when it carries none, or
    not in the `Bearer <token>` form, or a token not in the table."""
    if not authorization:
        raise Unauthenticated(
            "Missing 'authorization: Bearer <token>' metadata.", reason=Reason.TOKEN_MISSING
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "The authorization metadata must be 'Bearer <token>'.", reason=Reason.TOKEN_MALFORMED
        )
    caller = tokens.find(token.strip())
    if caller is None:
        raise Unauthenticated("The token is not known to this server.", reason=Reason.TOKEN_UNKNOWN)
    return caller
