"""Logs: one JSON object per line on stderr (or readable text), carrying the request, merchant,
channel and broadcast of the work that wrote them.

Those four come from contextvars: the call guard sets them for each RPC (from `x-request-id` and
the request's resource name), background work sets its own (`bound`). asyncio copies the context
into tasks a handler starts, so work an RPC begins is logged with that RPC's ids; long-lived
loops should start with an empty `contextvars.Context()` and bind per unit of work.

While a span is in progress (broadcaster.tracing: an RPC, a batch send, a webhook, a contact
sync), a line also carries its `trace_id` and `span_id` (W3C hex), so a log line leads to its
trace and back. With tracing off there never is one.

The formatter writes what it is given: callers log ids, counts and reasons, never credentials,
tokens or message bodies.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from opentelemetry import trace

from broadcaster.domain.names import ID

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
merchant: contextvars.ContextVar[str] = contextvars.ContextVar("merchant", default="")
channel: contextvars.ContextVar[str] = contextvars.ContextVar("channel", default="")
broadcast: contextvars.ContextVar[str] = contextvars.ContextVar("broadcast", default="")

_CONTEXT = (
    ("request_id", request_id),
    ("merchant", merchant),
    ("channel", channel),
    ("broadcast", broadcast),
)
FORMATS = ("json", "text")
MAX_REQUEST_ID = 128

_RESOURCE = re.compile(rf"merchants/({ID})(?:/(channels|broadcasts)/({ID}))?(?:/|$)")
# Attributes every LogRecord has; anything else came from `extra=` and is written as a field.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


@contextlib.contextmanager
def bound(
    *,
    merchant: str | None = None,
    channel: str | None = None,
    broadcast: str | None = None,
    request_id: str | None = None,
) -> Iterator[None]:
    """Log with these ids inside the block (those not given keep their current value)."""
    tokens = []
    for (_, var), value in zip(_CONTEXT, (request_id, merchant, channel, broadcast), strict=True):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def new_request_id(given: str | None = None) -> str:
    """The caller's request id when it is a sensible one (printable, at most 128 characters),
    else a fresh one."""
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


def bind_resource(name: str) -> None:
    """Set merchant, channel and broadcast from a resource name (`merchants/m/broadcasts/b`,
    `merchants/m/channels/c/contacts/x`, …) in the current context. Anything else sets nothing:
    the name is the caller's input, checked properly later."""
    m = _RESOURCE.match(name)
    if m is None:
        return
    merchant.set(m.group(1))
    if m.group(2) == "channels":
        channel.set(m.group(3))
    elif m.group(2) == "broadcasts":
        broadcast.set(m.group(3))


def context_fields() -> dict[str, str]:
    fields = {key: value for key, var in _CONTEXT if (value := var.get())}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", request_id?, merchant?, channel?, broadcast?,
    trace_id?, span_id?, <extra fields>, exception?}` on one line (newlines in the message are
    escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(context_fields())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # ASCII output: a stray surrogate in a message cannot make the line unwritable.
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message [request_id=… merchant=…]`, for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = context_fields()
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        context = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{first} [{context}]{newline}{rest}"


def configure(fmt: str = "json", level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record (and Python warnings) to `stream` (stderr) in `fmt`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
