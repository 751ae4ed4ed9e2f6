"""Request-body rules of the send endpoints, from messaging-api.yml and LINE's reference:
1-5 message objects, text 1-5,000 UTF-16 code units with at most 20 emoji (each at the index of
a `$`), media URLs HTTPS and at most 2,000 characters, a video's `trackingId` at most 100
characters, an imagemap 1,040 wide with 1-50 actions, a template's `altText` at most 400 and its
`type` one of buttons (1-4 actions), confirm (2), carousel (1-10 columns of 1-3 actions) and
image_carousel (1-10 columns), a flex bubble or a carousel of 1-12, a quick reply of 1-13
items, at most 500 multicast recipients given as user ids. Each violation names the property
the way LINE does (`messages[0].text`, `to[3]`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .ids import all_user_ids, is_user_id

MAX_MESSAGES = 5
MAX_MULTICAST_RECIPIENTS = 500
MAX_TEXT_UTF16 = 5_000
MAX_URL_LENGTH = 2_000
MAX_ALT_TEXT = 1_500
MAX_TEMPLATE_ALT_TEXT = 400
MAX_EMOJIS = 20
MAX_TRACKING_ID = 100
IMAGEMAP_WIDTH = 1_040
MAX_IMAGEMAP_ACTIONS = 50
MAX_TEMPLATE_COLUMNS = 10
MAX_FLEX_BUBBLES = 12
MAX_QUICK_REPLY_ITEMS = 13
_TRACKING_ID = re.compile(r"[A-Za-z0-9\-.=,+*()%$&;:@{}!?<>\[\]]{1,100}")
MESSAGE_TYPES = (
    "text",
    "textV2",
    "sticker",
    "image",
    "video",
    "audio",
    "location",
    "imagemap",
    "template",
    "flex",
    "coupon",
)
_AGGREGATION_UNIT = re.compile(r"[a-zA-Z0-9_]{1,30}")
_MISSING = "must be specified"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One entry of LINE's `details[]`."""

    message: str
    property: str

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "property": self.property}


def utf16_length(text: str) -> int:
    """Length as LINE counts it: characters outside the BMP (most emoji) count twice."""
    return len(text.encode("utf-16-le")) // 2


def _text(
    errors: list[ErrorDetail],
    msg: Mapping[str, Any],
    where: str,
    key: str,
    *,
    max_utf16: int,
    required: bool = True,
) -> None:
    value = msg.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            errors.append(ErrorDetail(_MISSING, prop))
    elif not isinstance(value, str):
        errors.append(ErrorDetail("Must be a string", prop))
    elif value == "" and required:
        errors.append(ErrorDetail("May not be empty", prop))
    elif utf16_length(value) > max_utf16:
        errors.append(ErrorDetail(f"Length must be between 0 and {max_utf16}", prop))


def _https_url(
    errors: list[ErrorDetail],
    msg: Mapping[str, Any],
    where: str,
    key: str,
    *,
    required: bool = True,
) -> None:
    value = msg.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            errors.append(ErrorDetail(_MISSING, prop))
    elif not isinstance(value, str):
        errors.append(ErrorDetail("Must be a string", prop))
    elif len(value) > MAX_URL_LENGTH:
        errors.append(ErrorDetail(f"Length must be between 0 and {MAX_URL_LENGTH}", prop))
    elif not value.startswith("https://") or len(value) == len("https://"):
        errors.append(ErrorDetail("Must be a valid HTTPS URL", prop))


def _typed(
    errors: list[ErrorDetail],
    msg: Mapping[str, Any],
    where: str,
    key: str,
    kind: type | tuple[type, ...],
    label: str,
) -> None:
    value = msg.get(key)
    if value is None:
        errors.append(ErrorDetail(_MISSING, f"{where}.{key}"))
    elif not isinstance(value, kind) or isinstance(value, bool):
        errors.append(ErrorDetail(f"Must be {label}", f"{where}.{key}"))


def _size(
    errors: list[ErrorDetail], value: Any, prop: str, low: int, high: int
) -> list[Any] | None:
    """`value` if it is an array of `low` to `high` items; else an error and None."""
    if value is None:
        errors.append(ErrorDetail(_MISSING, prop))
    elif not isinstance(value, list):
        errors.append(ErrorDetail("Must be an array", prop))
    elif not low <= len(value) <= high:
        errors.append(ErrorDetail(f"Size must be between {low} and {high}", prop))
    else:
        return value
    return None


def _text_message(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _text(errors, msg, where, "text", max_utf16=MAX_TEXT_UTF16)
    if "emojis" not in msg:
        return
    emojis = _size(errors, msg["emojis"], f"{where}.emojis", 0, MAX_EMOJIS)
    text = msg.get("text")
    units = text.encode("utf-16-le") if isinstance(text, str) else b""
    dollars = {i // 2 for i in range(0, len(units), 2) if units[i : i + 2] == b"$\x00"}
    for j, emoji in enumerate(emojis or ()):
        prop = f"{where}.emojis[{j}]"
        if not isinstance(emoji, dict):
            errors.append(ErrorDetail("Must be an object", prop))
            continue
        _typed(errors, emoji, prop, "productId", str, "a string")
        _typed(errors, emoji, prop, "emojiId", str, "a string")
        index = emoji.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index not in dollars:
            errors.append(ErrorDetail("Invalid emoji index", f"{prop}.index"))


def _sticker(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _typed(errors, msg, where, "packageId", str, "a string")
    _typed(errors, msg, where, "stickerId", str, "a string")


def _visual(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _https_url(errors, msg, where, "originalContentUrl")
    _https_url(errors, msg, where, "previewImageUrl")


def _video(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _visual(errors, msg, where)
    tracking = msg.get("trackingId")
    if tracking is not None and (
        not isinstance(tracking, str) or _TRACKING_ID.fullmatch(tracking) is None
    ):
        errors.append(ErrorDetail("Invalid trackingId", f"{where}.trackingId"))


def _audio(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _https_url(errors, msg, where, "originalContentUrl")
    _typed(errors, msg, where, "duration", int, "an integer")


def _location(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _text(errors, msg, where, "title", max_utf16=100)
    _text(errors, msg, where, "address", max_utf16=100)
    _typed(errors, msg, where, "latitude", (int, float), "a number")
    _typed(errors, msg, where, "longitude", (int, float), "a number")


def _imagemap(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _https_url(errors, msg, where, "baseUrl")
    _text(errors, msg, where, "altText", max_utf16=MAX_ALT_TEXT)
    _typed(errors, msg, where, "baseSize", dict, "an object")
    size = msg.get("baseSize")
    if isinstance(size, dict) and size.get("width") != IMAGEMAP_WIDTH:
        errors.append(ErrorDetail(f"Must be {IMAGEMAP_WIDTH}", f"{where}.baseSize.width"))
    actions = _size(errors, msg.get("actions"), f"{where}.actions", 1, MAX_IMAGEMAP_ACTIONS)
    for i, action in enumerate(actions or ()):
        prop = f"{where}.actions[{i}]"
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in ("uri", "message", "clipboard"):
            errors.append(ErrorDetail("Invalid action type", f"{prop}.type"))
        elif not isinstance(action.get("area"), dict):
            errors.append(ErrorDetail(_MISSING, f"{prop}.area"))


# Template types: the container of their actions, and how many each holds.
_TEMPLATE_ACTIONS = {"buttons": (1, 4), "confirm": (2, 2), "carousel": (1, 3)}


def _template(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _text(errors, msg, where, "altText", max_utf16=MAX_TEMPLATE_ALT_TEXT)
    _typed(errors, msg, where, "template", dict, "an object")
    template = msg.get("template")
    if not isinstance(template, dict):
        return
    prop = f"{where}.template"
    kind = template.get("type")
    if kind in ("buttons", "confirm"):
        low, high = _TEMPLATE_ACTIONS[kind]
        _size(errors, template.get("actions"), f"{prop}.actions", low, high)
    elif kind in ("carousel", "image_carousel"):
        columns = _size(errors, template.get("columns"), f"{prop}.columns", 1, MAX_TEMPLATE_COLUMNS)
        for i, column in enumerate(columns or ()):
            if kind == "carousel" and isinstance(column, dict):
                low, high = _TEMPLATE_ACTIONS[kind]
                _size(errors, column.get("actions"), f"{prop}.columns[{i}].actions", low, high)
    else:
        errors.append(ErrorDetail("Invalid template type", f"{prop}.type"))


def _flex(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _text(errors, msg, where, "altText", max_utf16=MAX_ALT_TEXT)
    _typed(errors, msg, where, "contents", dict, "an object")
    contents = msg.get("contents")
    if not isinstance(contents, dict):
        return
    kind = contents.get("type")
    if kind == "carousel":
        _size(errors, contents.get("contents"), f"{where}.contents.contents", 1, MAX_FLEX_BUBBLES)
    elif kind != "bubble":
        errors.append(ErrorDetail("Invalid flex container type", f"{where}.contents.type"))


def _quick_reply(errors: list[ErrorDetail], value: Any, where: str) -> None:
    if not isinstance(value, dict):
        errors.append(ErrorDetail("Must be an object", where))
        return
    items = _size(errors, value.get("items"), f"{where}.items", 1, MAX_QUICK_REPLY_ITEMS)
    for i, item in enumerate(items or ()):
        if not isinstance(item, dict) or not isinstance(item.get("action"), dict):
            errors.append(ErrorDetail(_MISSING, f"{where}.items[{i}].action"))


def _coupon(errors: list[ErrorDetail], msg: Mapping[str, Any], where: str) -> None:
    _typed(errors, msg, where, "couponId", str, "a string")


_BY_TYPE: Mapping[str, Callable[[list[ErrorDetail], Mapping[str, Any], str], None]] = {
    "text": _text_message,
    "textV2": _text_message,
    "sticker": _sticker,
    "image": _visual,
    "video": _video,
    "audio": _audio,
    "location": _location,
    "imagemap": _imagemap,
    "template": _template,
    "flex": _flex,
    "coupon": _coupon,
}


def _sender(errors: list[ErrorDetail], sender: Any, where: str) -> None:
    if not isinstance(sender, dict):
        errors.append(ErrorDetail("Must be an object", where))
        return
    _text(errors, sender, where, "name", max_utf16=20, required=False)
    _https_url(errors, sender, where, "iconUrl", required=False)


def validate_messages(body: Mapping[str, Any]) -> list[ErrorDetail]:
    messages = body.get("messages")
    if messages is None:
        return [ErrorDetail(_MISSING, "messages")]
    if not isinstance(messages, list):
        return [ErrorDetail("Must be an array", "messages")]
    if not 1 <= len(messages) <= MAX_MESSAGES:
        return [ErrorDetail(f"Size must be between 1 and {MAX_MESSAGES}", "messages")]
    errors: list[ErrorDetail] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            errors.append(ErrorDetail("Must be an object", where))
            continue
        kind = msg.get("type")
        check = _BY_TYPE.get(kind) if isinstance(kind, str) else None
        if check is None:
            allowed = ", ".join(MESSAGE_TYPES)
            errors.append(
                ErrorDetail(f"Must be one of the following values: [{allowed}]", f"{where}.type")
            )
            continue
        check(errors, msg, where)
        if "sender" in msg:
            _sender(errors, msg["sender"], f"{where}.sender")
        if "quickReply" in msg:
            _quick_reply(errors, msg["quickReply"], f"{where}.quickReply")
    return errors


def _common(body: Mapping[str, Any], errors: list[ErrorDetail], *, max_units: int | None) -> None:
    if "notificationDisabled" in body and not isinstance(body["notificationDisabled"], bool):
        errors.append(ErrorDetail("Must be a boolean", "notificationDisabled"))
    units = body.get("customAggregationUnits")
    if units is None:
        return
    if not isinstance(units, list) or (max_units is not None and len(units) > max_units):
        errors.append(
            ErrorDetail(f"Size must be between 0 and {max_units}", "customAggregationUnits")
        )
        return
    for i, unit in enumerate(units):
        if not isinstance(unit, str) or _AGGREGATION_UNIT.fullmatch(unit) is None:
            errors.append(ErrorDetail("Invalid unit name", f"customAggregationUnits[{i}]"))


@dataclass(frozen=True, slots=True)
class MulticastCheck:
    errors: list[ErrorDetail]
    invalid_recipients: list[int]


def validate_multicast(body: Mapping[str, Any]) -> MulticastCheck:
    errors: list[ErrorDetail] = []
    invalid: list[int] = []
    to = body.get("to")
    if to is None:
        errors.append(ErrorDetail(_MISSING, "to"))
    elif not isinstance(to, list):
        errors.append(ErrorDetail("Must be an array", "to"))
    elif not 1 <= len(to) <= MAX_MULTICAST_RECIPIENTS:
        errors.append(ErrorDetail(f"Size must be between 1 and {MAX_MULTICAST_RECIPIENTS}", "to"))
    elif not all_user_ids(to):  # one check for the whole list; per entry only to name them
        invalid = [i for i, user_id in enumerate(to) if not is_user_id(user_id)]
        errors.extend(ErrorDetail("Invalid user ID", f"to[{i}]") for i in invalid)
    errors.extend(validate_messages(body))
    _common(body, errors, max_units=1)
    return MulticastCheck(errors, invalid)


def validate_push(body: Mapping[str, Any]) -> list[ErrorDetail]:
    errors: list[ErrorDetail] = []
    to = body.get("to")
    if to is None:
        errors.append(ErrorDetail(_MISSING, "to"))
    elif not isinstance(to, str) or to == "":
        errors.append(ErrorDetail("Must be a non-empty string", "to"))
    errors.extend(validate_messages(body))
    _common(body, errors, max_units=1)  # "only one unit name per send" (LINE's guide)
    return errors


def validate_broadcast(body: Mapping[str, Any]) -> list[ErrorDetail]:
    errors = validate_messages(body)
    _common(body, errors, max_units=0)
    return errors
