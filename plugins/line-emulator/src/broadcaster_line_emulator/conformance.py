"""Check LINE traffic against the official OpenAPI specs vendored beside it in `spec/`:
messaging-api.yml, insight.yml (statistics) and channel-access-token.yml (the endpoints that
issue, verify and revoke channel access tokens; their errors are that spec's
`{"error", "error_description"}`).

Reusable by the tests of the emulator and of every LINE client (the LINE plugin's among them);
it needs the `testing` extra (`broadcaster-line-emulator[testing]`). The usual way is to hang a
recorder on the emulator, so every request the plugin sends and every response it gets is
checked::

    from broadcaster_line_emulator.conformance import ConformanceRecorder

    conformance = ConformanceRecorder()
    emulator = LineEmulator(observers=[conformance])
    ...  # exercise the plugin against emulator.base_url
    conformance.assert_clean()

Or call the checks directly: `check_request(...)`, `check_response(...)`,
`check_exchange(exchange)` and `check_webhook_body(body)` return lists of `Violation`.

What counts as a violation, beyond what openapi-core validates (parameters, security, the
request and response body schemas):

- a property the schema does not declare (the specs never set `additionalProperties: false`,
  but LINE documents every field it accepts, so an undeclared one is a client bug);
- a message, action or event object that does not satisfy the schema its discriminator
  (`type`) maps to (openapi-core does not follow `discriminator.mapping`), or whose `type`
  is not in the mapping;
- an `X-Line-*` request header the operation does not declare (LINE rejects
  `X-Line-Retry-Key` on endpoints that do not support it);
- a path or method the spec does not have.

The spec lists only `200` for most GET operations, yet LINE documents 400/401/403/404/429
answers for them in its common error specification. A response with such an undeclared error
status is therefore checked against the spec's `ErrorResponse` schema instead, and noted in
`Report.notes` rather than reported as a violation.

The spec's `servers` entry is https://api.line.me: requests are checked as if sent there,
whatever host the emulator listens on. webhook.yml describes callbacks as `POST /callback`
on https://example.com; webhook bodies are checked as that request.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jsonschema_path import SchemaPath
from multidict import CIMultiDict, MultiDict
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.schemas import (
    oas30_read_schema_validators_factory,
    oas30_write_schema_validators_factory,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

SPEC_DIR = Path(__file__).resolve().parent / "spec"
MESSAGING_API_SERVER = "https://api.line.me"
WEBHOOK_SERVER = "https://example.com"
WEBHOOK_PATH = "/callback"


@functools.cache
def messaging_api() -> OpenAPI:
    """messaging-api.yml, loaded once per process."""
    return OpenAPI.from_file_path(str(SPEC_DIR / "messaging-api.yml"))


@functools.cache
def webhook_api() -> OpenAPI:
    """webhook.yml, loaded once per process."""
    return OpenAPI.from_file_path(str(SPEC_DIR / "webhook.yml"))


@dataclass(frozen=True)
class Violation:
    """One way a request, response or webhook body departs from the spec."""

    kind: str  # "request", "response" or "webhook"
    operation: str  # e.g. "POST /v2/bot/message/multicast"
    message: str
    status: int | None = None

    def __str__(self) -> str:
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{self.kind} {self.operation}{status}: {self.message}"


class _ExchangeLike(Protocol):
    """What `check_exchange` needs; the emulator's `Exchange` has all of it."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def status(self) -> int | None: ...
    @property
    def response_headers(self) -> Mapping[str, str]: ...
    @property
    def response_body(self) -> bytes: ...


class SpecRequest:
    """An openapi-core request as if it had been sent to the spec's server."""

    def __init__(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        host_url: str = MESSAGING_API_SERVER,
    ) -> None:
        self.host_url = host_url
        self.path = path
        self.method = method.lower()
        query_items = query.items() if isinstance(query, Mapping) else query
        header_items = headers.items() if isinstance(headers, Mapping) else headers
        self.headers: CIMultiDict[str] = CIMultiDict(header_items)
        self.parameters = RequestParameters(query=MultiDict(query_items), header=self.headers)
        self.body = body if body else None
        self.content_type = self.headers.get("Content-Type", "").lower()


class SpecResponse:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.data = body
        self.content_type = self.headers.get("Content-Type", "").lower()


@dataclass
class Report:
    """Violations and notes from a number of checks."""

    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.violations.extend(other.violations)
        self.notes.extend(other.notes)


# -- operations -------------------------------------------------------------------------------


@functools.cache
def channel_access_token_api() -> OpenAPI:
    """channel-access-token.yml (issuing, verifying and revoking tokens), loaded once."""
    return OpenAPI.from_file_path(str(SPEC_DIR / "channel-access-token.yml"))


@functools.cache
def insight_api() -> OpenAPI:
    """insight.yml (statistics, among them statistics per unit), loaded once."""
    return OpenAPI.from_file_path(str(SPEC_DIR / "insight.yml"))


def _apis() -> tuple[OpenAPI, ...]:
    """The specs of what clients call on https://api.line.me."""
    return (messaging_api(), channel_access_token_api(), insight_api())


@functools.cache
def _path_patterns() -> tuple[tuple[re.Pattern[str], str, int], ...]:
    patterns = []
    for index, api in enumerate(_apis()):
        for template in (api.spec / "paths").read_value():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            patterns.append((re.compile(regex), template, index))
    # Literal paths before templated ones, e.g. /quota/consumption before /{messageId}/content.
    patterns.sort(key=lambda p: (p[1].count("{"), -len(p[1])))
    return tuple(patterns)


def _find(method: str, path: str) -> tuple[OpenAPI, str, SchemaPath] | None:
    for regex, template, index in _path_patterns():
        if regex.fullmatch(path):
            api = _apis()[index]
            item = api.spec / "paths" / template
            if method.lower() in item:
                return api, template, item / method.lower()
    return None


def find_operation(method: str, path: str) -> tuple[str, SchemaPath] | None:
    """The spec's (path template, operation) for a concrete request path."""
    found = _find(method, path)
    return None if found is None else found[1:]


def _declared_headers(operation: SchemaPath) -> set[str]:
    names: set[str] = set()
    if "parameters" in operation:
        for parameter in operation / "parameters":
            declared = parameter.read_value()
            if declared.get("in") == "header":
                names.add(str(declared["name"]).lower())
    return names


def _json_schema(node: SchemaPath) -> SchemaPath | None:
    if "content" in node and "application/json" in node / "content":
        media = node / "content" / "application/json"
        return media / "schema" if "schema" in media else None
    return None


# -- messages from openapi-core errors --------------------------------------------------------


def _where(error: Exception) -> str:
    """The JSON path of a jsonschema ValidationError, e.g. `messages/0/text`."""
    return "/".join(map(str, getattr(error, "absolute_path", ())))


def _what(error: Exception) -> str:
    return str(getattr(error, "message", error))


def _schema_errors(error: InvalidSchemaValue) -> list[str]:
    return [f"{_where(e) or '<body>'}: {_what(e)}" for e in error.schema_errors]


def _describe(error: BaseException) -> str:
    """One line for an openapi-core error, including the schema errors it wraps."""
    if isinstance(error, InvalidSchemaValue):
        return "; ".join(_schema_errors(error))
    parts = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, InvalidSchemaValue):
            parts.extend(_schema_errors(cause))
        else:
            parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return "; ".join(parts)


# -- strict walk: undeclared properties and discriminator targets -----------------------------


class _Walker:
    def __init__(self, root: SchemaPath, *, writing: bool) -> None:
        self.root = root
        self.factory = (
            oas30_write_schema_validators_factory
            if writing
            else oas30_read_schema_validators_factory
        )
        self.problems: list[str] = []

    def _resolve(self, ref: str) -> SchemaPath:
        node = self.root
        for part in ref.lstrip("#/").split("/"):
            node = node / part
        return node

    def _parts(
        self, schema: SchemaPath, value: dict[str, Any], pointer: str, seen: frozenset[str]
    ) -> Iterator[SchemaPath]:
        yield schema
        if "allOf" in schema:
            for sub in schema / "allOf":
                yield from self._parts(sub, value, pointer, seen)
        if "discriminator" not in schema:
            return
        discriminator = (schema / "discriminator").read_value()
        prop, mapping = discriminator["propertyName"], discriminator.get("mapping", {})
        tag = value.get(prop)
        if tag not in mapping:
            self.problems.append(f"{pointer}/{prop}: {tag!r} is not one of {sorted(mapping)}")
            return
        ref = mapping[tag]
        if ref in seen:
            return
        target = self._resolve(ref)
        try:
            self.factory.create(self.root, target).validate(value)
        except InvalidSchemaValue as exc:
            for e in exc.schema_errors:
                where = _where(e)
                self.problems.append(
                    f"{pointer}{'/' + where if where else ''}: {_what(e)} "
                    f"(as {ref.rsplit('/', 1)[-1]})"
                )
        yield from self._parts(target, value, pointer, seen | {ref})

    def walk(
        self, schema: SchemaPath, value: Any, pointer: str = "", seen: frozenset[str] = frozenset()
    ) -> None:
        if isinstance(value, list):
            if "items" in schema:
                for i, item in enumerate(value):
                    self.walk(schema / "items", item, f"{pointer}/{i}", seen)
            return
        if not isinstance(value, dict):
            return
        children: dict[str, SchemaPath] = {}
        extra: SchemaPath | None = None  # schema of properties not listed (additionalProperties)
        declared = False
        anything = False  # additionalProperties: true, oneOf/anyOf: not checked here
        for part in self._parts(schema, value, pointer, seen):
            if "properties" in part:
                declared = True
                for name in (part / "properties").read_value():
                    children.setdefault(name, part / "properties" / name)
            if "additionalProperties" in part:
                additional = (part / "additionalProperties").read_value()
                if isinstance(additional, dict):
                    extra = part / "additionalProperties"
                anything = anything or additional is True
            anything = anything or "oneOf" in part or "anyOf" in part
        for key, item in value.items():
            if key in children:
                self.walk(children[key], item, f"{pointer}/{key}", seen)
            elif extra is not None:
                self.walk(extra, item, f"{pointer}/{key}", seen)
            elif declared and not anything:
                self.problems.append(f"{pointer}/{key}: property not declared by the spec")


def _strict(
    root: SchemaPath, schema: SchemaPath | None, body: bytes | None, *, writing: bool
) -> list[str]:
    if schema is None or not body:
        return []
    try:
        value = json.loads(body)
    except ValueError:
        return []  # openapi-core already reports unparsable bodies
    walker = _Walker(root, writing=writing)
    walker.walk(schema, value)
    return walker.problems


# -- public checks ----------------------------------------------------------------------------


def check_request(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> list[Violation]:
    """Everything wrong with one Messaging API request."""
    operation_name = f"{method.upper()} {path}"
    found = _find(method, path)
    if found is None:
        return [Violation("request", operation_name, "no such operation in the LINE specs")]
    api, template, operation = found
    operation_name = f"{method.upper()} {template}"
    request = SpecRequest(method, path, query=query, headers=headers, body=body)
    out = [
        Violation("request", operation_name, _describe(e)) for e in api.iter_request_errors(request)
    ]
    declared = _declared_headers(operation)
    out.extend(
        Violation("request", operation_name, f"header {name} is not declared for this operation")
        for name in {k.lower() for k in request.headers}
        if name.startswith("x-line-") and name not in declared
    )
    if "requestBody" in operation:
        schema = _json_schema(operation / "requestBody")
        out.extend(
            Violation("request", operation_name, problem)
            for problem in _strict(api.spec, schema, body, writing=True)
        )
    return out


def check_response(
    method: str,
    path: str,
    status: int,
    *,
    query: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    response_headers: Mapping[str, str],
    response_body: bytes,
) -> Report:
    """Everything wrong with the response to one Messaging API request."""
    report = Report()
    found = _find(method, path)
    if found is None:
        report.violations.append(
            Violation(
                "response",
                f"{method.upper()} {path}",
                "no such operation in the LINE specs",
                status,
            )
        )
        return report
    api, template, operation = found
    name = f"{method.upper()} {template}"
    request = SpecRequest(method, path, query=query, headers=headers, body=body)
    response = SpecResponse(status, response_headers, response_body)
    schema: SchemaPath | None = None
    root = api.spec
    for error in api.iter_response_errors(request, response):
        if isinstance(error, ResponseNotFound) and status >= 400:
            report.notes.append(
                f"{name}: status {status} is not in the spec; checked against ErrorResponse"
            )
            # insight.yml declares no error schema: its answers share messaging-api.yml's,
            # but for the documented 400 of statistics per unit, whose fields are all null.
            if _is_null_error(response_body):
                continue
            if "ErrorResponse" not in api.spec / "components" / "schemas":
                root = messaging_api().spec
            schema = root / "components" / "schemas" / "ErrorResponse"
            try:
                oas30_read_schema_validators_factory.create(root, schema).validate(
                    json.loads(response_body)
                )
            except (ValueError, InvalidSchemaValue) as exc:
                report.violations.append(Violation("response", name, _describe(exc), status))
            continue
        report.violations.append(Violation("response", name, _describe(error), status))
    if schema is None:
        responses = operation / "responses"
        if str(status) in responses:
            schema = _json_schema(responses / str(status))
    report.violations.extend(
        Violation("response", name, problem, status)
        for problem in _strict(root, schema, response_body, writing=False)
    )
    return report


def _is_null_error(body: bytes) -> bool:
    """LINE's 400 for "Get statistics per unit": `{"message": null, "key": null, ...}`."""
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and "message" in value and all(v is None for v in value.values())


def check_exchange(exchange: _ExchangeLike) -> Report:
    """Check one observed request and, unless the connection was reset, its response."""
    report = Report()
    report.violations.extend(
        check_request(
            exchange.method,
            exchange.path,
            query=exchange.query,
            headers=exchange.headers,
            body=exchange.body,
        )
    )
    if exchange.status is not None:
        report.extend(
            check_response(
                exchange.method,
                exchange.path,
                exchange.status,
                query=exchange.query,
                headers=exchange.headers,
                body=exchange.body,
                response_headers=exchange.response_headers,
                response_body=exchange.response_body,
            )
        )
    return report


def check_webhook_body(body: bytes, headers: Mapping[str, str] | None = None) -> list[Violation]:
    """Everything wrong with a webhook request body (and its headers) per webhook.yml."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    request = SpecRequest(
        "POST", WEBHOOK_PATH, headers=all_headers, body=body, host_url=WEBHOOK_SERVER
    )
    api = webhook_api()
    name = f"POST {WEBHOOK_PATH}"
    out = [Violation("webhook", name, _describe(e)) for e in api.iter_request_errors(request)]
    schema = api.spec / "components" / "schemas" / "CallbackRequest"
    out.extend(
        Violation("webhook", name, problem)
        for problem in _strict(api.spec, schema, body, writing=True)
    )
    return out


class ConformanceRecorder:
    """An emulator observer that checks every exchange and keeps what it found."""

    def __init__(self) -> None:
        self.checked = 0
        self.report = Report()

    def __call__(self, exchange: _ExchangeLike) -> None:
        self.checked += 1
        self.report.extend(check_exchange(exchange))

    @property
    def violations(self) -> list[Violation]:
        return self.report.violations

    def clear(self) -> None:
        self.checked = 0
        self.report = Report()

    def assert_clean(self) -> None:
        assert self.checked, "no exchange was observed"
        assert not self.violations, "spec violations:\n" + "\n".join(map(str, self.violations))
