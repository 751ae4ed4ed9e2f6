"""Every stable reason the product returns to callers or records on what it keeps.

A reason is the UPPER_SNAKE word a caller branches on: `ErrorInfo.reason` of an error, a
`BadRequest` field violation's reason, a failed broadcast's `failure_reason`, a delivery's
`reason` and a contact sync's `error_reason`. A reason never changes meaning once published;
a new meaning gets a new member. docs/api.md documents each member (a test holds the two
together).

The values are the strings callers see, so a member compares equal to its string.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """A stable reason; the value is the published string."""

    # --- generic: the reason of a status when nothing more specific applies
    INTERNAL = "INTERNAL"  # a bug or an unexpected failure; it was logged
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # bad request fields, each named in BadRequest
    INVALID_FIELD = "INVALID_FIELD"  # one BadRequest field violation: the field is invalid
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # the system's state does not allow the request
    ALREADY_EXISTS = "ALREADY_EXISTS"  # what the request would create exists already
    UNAVAILABLE = "UNAVAILABLE"  # a dependency cannot be reached now; retry later
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no credentials, or credentials the server does not know
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # a capacity or size limit is reached

    # --- authentication
    TOKEN_MISSING = "TOKEN_MISSING"  # no `authorization` metadata on the call
    TOKEN_MALFORMED = "TOKEN_MALFORMED"  # the authorization metadata is not `Bearer <token>`
    TOKEN_UNKNOWN = "TOKEN_UNKNOWN"  # the bearer token is not configured on this server

    # --- capacity
    TOO_MANY_CALLS = "TOO_MANY_CALLS"  # the server has its maximum of calls in progress

    # --- the service's own dependencies
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # the database cannot be reached; retry shortly

    # --- bad input
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # a page token not issued for this query
    INVALID_CURSOR = "INVALID_CURSOR"  # an event cursor this service did not issue
    MALFORMED_REQUEST = "MALFORMED_REQUEST"  # the request bytes are not a valid protobuf message
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"  # the request is larger than its method accepts
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"  # a request id already used for another request
    SCHEDULE_TIME_MISSING = "SCHEDULE_TIME_MISSING"  # ScheduleBroadcast without a schedule_time
    SCHEDULE_TIME_PAST = "SCHEDULE_TIME_PAST"  # a schedule_time not in the future
    SCHEDULE_TIME_TOO_SOON = "SCHEDULE_TIME_TOO_SOON"  # less than the minimum lead time ahead
    SCHEDULE_TIME_TOO_FAR = "SCHEDULE_TIME_TOO_FAR"  # more than 180 days ahead
    MESSAGE_KIND_UNSUPPORTED = "MESSAGE_KIND_UNSUPPORTED"  # the channel does not take this kind

    # --- missing resources (or another merchant's)
    MERCHANT_NOT_FOUND = "MERCHANT_NOT_FOUND"  # the merchant is not one the token may act for
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"  # no such channel (also: a sync whose channel went)
    CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"  # no such contact
    CUSTOMER_GROUP_NOT_FOUND = "CUSTOMER_GROUP_NOT_FOUND"  # no such customer group
    BROADCAST_NOT_FOUND = "BROADCAST_NOT_FOUND"  # no such broadcast

    # --- channels
    CHANNEL_ALREADY_CONNECTED = "CHANNEL_ALREADY_CONNECTED"  # this account is connected already
    CHANNEL_CREDENTIALS_INVALID = "CHANNEL_CREDENTIALS_INVALID"  # the channel refused them
    CHANNEL_UNAVAILABLE = "CHANNEL_UNAVAILABLE"  # the channel's API could not be reached
    CHANNEL_NOT_CONNECTED = "CHANNEL_NOT_CONNECTED"  # the channel is (or went) disconnected
    CHANNEL_DISCONNECTED = "CHANNEL_DISCONNECTED"  # a running contact sync's channel went away

    # --- broadcasts: preconditions
    AUDIENCE_NOT_ELIGIBLE = "AUDIENCE_NOT_ELIGIBLE"  # the channel does not allow this audience
    BROADCAST_NOT_DRAFT = "BROADCAST_NOT_DRAFT"  # only a draft can be edited, deleted or sent
    BROADCAST_NOT_SENDING = "BROADCAST_NOT_SENDING"  # only sending or scheduled can be cancelled
    BROADCAST_NOT_SCHEDULED = "BROADCAST_NOT_SCHEDULED"  # only a scheduled one can be unscheduled
    BROADCAST_NOT_FINISHED = "BROADCAST_NOT_FINISHED"  # a resend needs a finished broadcast
    BROADCAST_MESSAGES_INVALID = "BROADCAST_MESSAGES_INVALID"  # messages break channel rules
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # the recipients exceed the channel's remaining quota
    RESEND_CHANNEL_FIXED = "RESEND_CHANNEL_FIXED"  # a resend stays on its source's channel

    # --- customer groups: preconditions
    CUSTOMER_GROUP_IN_USE = "CUSTOMER_GROUP_IN_USE"  # a draft's audience uses the group

    # --- recorded when a send stops (failure_reason) or per recipient (delivery reason)
    QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"  # the monthly quota ran out while sending
    CHANNEL_REJECTED = "CHANNEL_REJECTED"  # the channel refused a batch for good
    INVALID_RECIPIENT = "INVALID_RECIPIENT"  # the channel named this recipient's id invalid
    KEY_EXPIRED = "KEY_EXPIRED"  # unconfirmed, and too late to retry without a duplicate

    # --- statistics: why a broadcast's figures, or one of them, are unavailable
    STATISTICS_NOT_SUPPORTED = "STATISTICS_NOT_SUPPORTED"  # its channel keeps no statistics
    STATISTICS_ALLOWANCE_USED_UP = "STATISTICS_ALLOWANCE_USED_UP"  # sent without a unit
    STATISTICS_WITHHELD = "STATISTICS_WITHHELD"  # too few people for the channel to report it
    STATISTICS_NOT_YET = "STATISTICS_NOT_YET"  # not collected yet: the channel reports later
    # Its reads ended without figures: the channel's window ended first (unreachable, refusing
    # the credentials, or reporting none), or the channel was disconnected. None will come.
    STATISTICS_NOT_COLLECTED = "STATISTICS_NOT_COLLECTED"

    # --- test sends: why a named contact was not sent to (a test send's recipient reason)
    CONTACT_OPTED_OUT = "CONTACT_OPTED_OUT"  # the contact opted out of the merchant's messages
    CONTACT_BLOCKED = "CONTACT_BLOCKED"  # the contact blocked (unfollowed) the account

    # --- limits on what a caller holds at once
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"  # the merchant has as many WatchEvents streams as allowed
