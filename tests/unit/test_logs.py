"""The JSON log formatter, the log context, and `configure`."""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Iterator

import pytest

from broadcaster import logs
from broadcaster.logs import JsonFormatter, TextFormatter


def _record(message: str, *args: object, **kwargs: object) -> logging.LogRecord:
    logger = logging.getLogger("broadcaster.test")
    exc_info = kwargs.pop("exc_info", None)
    return logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        message,
        args,
        exc_info,  # type: ignore[arg-type]
        extra=kwargs or None,
    )


def _json(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def test_a_record_is_one_json_object_with_the_standard_fields() -> None:
    out = _json(_record("sent %d of %s", 3, "five"))
    assert out == {
        "time": out["time"],
        "level": "INFO",
        "logger": "broadcaster.test",
        "message": "sent 3 of five",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(out["time"]))


def test_context_ids_and_extra_fields_are_fields() -> None:
    with logs.bound(request_id="r-1", merchant="m-1", broadcast="b-1"):
        out = _json(_record("hello", batch=7, seconds=0.25))
    assert (out["request_id"], out["merchant"], out["broadcast"]) == ("r-1", "m-1", "b-1")
    assert "channel" not in out  # unknown ids are left out, not empty
    assert (out["batch"], out["seconds"]) == (7, 0.25)
    assert "request_id" not in _json(_record("after"))  # the block reset them


def test_bound_nests_and_keeps_what_it_is_not_given() -> None:
    with logs.bound(merchant="m-1", channel="c-1"), logs.bound(broadcast="b-2"):
        assert logs.context_fields() == {"merchant": "m-1", "channel": "c-1", "broadcast": "b-2"}
    assert logs.context_fields() == {}


def test_multi_line_messages_exceptions_and_odd_text_stay_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record = _record("first\nsecond ✓ 中文 \ud800", exc_info=sys.exc_info())
    out = _json(record)
    assert out["message"] == "first\nsecond ✓ 中文 \ud800"
    assert "ValueError: bad\nvalue" in str(out["exception"])
    assert JsonFormatter().format(record).isascii()  # nothing a stream could fail to encode


def test_unserialisable_extras_are_written_as_text() -> None:
    assert _json(_record("x", thing={1, 2}.__class__))["thing"] == "<class 'set'>"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("merchants/m1", {"merchant": "m1"}),
        ("merchants/m1/broadcasts/b1", {"merchant": "m1", "broadcast": "b1"}),
        ("merchants/m1/broadcasts/b1/deliveries/7", {"merchant": "m1", "broadcast": "b1"}),
        ("merchants/m1/channels/c1/contacts/x", {"merchant": "m1", "channel": "c1"}),
        ("merchants/m1/customerGroups/g1", {"merchant": "m1"}),
        ("merchants/m1/channels/c1/quota", {"merchant": "m1", "channel": "c1"}),
        ("", {}),
        ("merchants/", {}),
        ("merchants/" + "x" * 200, {}),
        ("shops/m1", {}),
    ],
)
def test_resource_names_give_the_ids(name: str, expected: dict[str, str]) -> None:
    import contextvars

    def bind() -> dict[str, str]:
        logs.bind_resource(name)
        return logs.context_fields()

    assert contextvars.copy_context().run(bind) == expected


def test_text_format_appends_the_context() -> None:
    with logs.bound(request_id="r-9"):
        line = TextFormatter().format(_record("hello\nworld"))
    assert line.endswith("INFO broadcaster.test hello [request_id=r-9]\nworld")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("root_logging")
def test_configure_sends_everything_as_json_lines() -> None:
    stream = io.StringIO()
    logs.configure("json", "INFO", stream)
    logging.getLogger("somewhere.else").info("one")
    logging.getLogger("broadcaster").debug("not at INFO")
    warnings.warn("two", UserWarning, stacklevel=1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["logger"], x["level"]) for x in lines] == [
        ("somewhere.else", "INFO"),
        ("py.warnings", "WARNING"),
    ]
    assert "two" in lines[1]["message"]


@pytest.mark.usefixtures("root_logging")
def test_configure_text() -> None:
    stream = io.StringIO()
    logs.configure("text", logging.WARNING, stream)
    logging.getLogger("x").warning("careful")
    assert stream.getvalue().rstrip().endswith("WARNING x careful")


def test_a_line_written_inside_a_span_carries_its_trace_and_span_ids() -> None:
    # A provider of its own: the process's global one is not touched.
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        context = span.get_span_context()
        out = _json(_record("inside"))
        text = TextFormatter().format(_record("inside"))
    assert out["trace_id"] == format(context.trace_id, "032x")
    assert out["span_id"] == format(context.span_id, "016x")
    assert re.fullmatch(r"[0-9a-f]{32}", str(out["trace_id"]))
    assert f"trace_id={out['trace_id']} span_id={out['span_id']}" in text
    after = _json(_record("after"))
    assert "trace_id" not in after and "span_id" not in after  # no span, no ids
