"""LINE message objects given as they are (a `channel_native` bubble): their rules and preview.

A channel-native bubble is one LINE message object of type `imagemap`, `template`, `flex` or
`text` (a text with quick replies or LINE emoji), with an optional `quickReply`. Its fields are
checked as messaging-api.yml declares them (required fields, types, enumerations) and with the
limits LINE's message reference sets (lengths, counts, URL schemes). Violations name the field
inside the bubble: `messages[2].channel_native.template.columns[3].actions[0].label`.

Lengths count UTF-16 code units, as LINE does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from broadcaster.channels import FieldViolation, shorten

NATIVE_TYPES = ("text", "imagemap", "template", "flex")
MAX_ALT_TEXT = 1_500  # imagemap and flex
MAX_TEMPLATE_ALT_TEXT = 400
MAX_TEXT_UTF16 = 5_000
MAX_URL_LENGTH = 2_000
MAX_LINK_LENGTH = 1_000  # uri actions
MAX_EMOJIS = 20
MAX_QUICK_REPLY_ITEMS = 13
MAX_IMAGEMAP_ACTIONS = 50
IMAGEMAP_BASE_WIDTH = 1_040
MAX_TEMPLATE_COLUMNS = 10
MAX_FLEX_BUBBLES = 12
MAX_FLEX_BYTES = 30_000  # one bubble; a carousel: 50,000
MAX_FLEX_CAROUSEL_BYTES = 50_000
LINK_SCHEMES = ("http", "https", "line", "tel")
_ACTION_TYPES = (
    "postback",
    "message",
    "uri",
    "datetimepicker",
    "camera",
    "cameraRoll",
    "location",
    "clipboard",
)
# Actions a template or a flex component may carry (the rest only in quick replies).
_CARD_ACTIONS = ("postback", "message", "uri", "datetimepicker", "clipboard")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class _Checker:
    """Collects violations while walking one bubble."""

    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, path: str, problem: str) -> None:
        self.found.append(FieldViolation(path, problem))

    def field(self, o: Mapping[str, Any], key: str, path: str, required: bool) -> tuple[str, Any]:
        """`o[key]`'s path and value; a missing one is None, and a violation if `required`."""
        where = f"{path}.{key}"
        value = o.get(key)
        if value is None and required:
            self.add(where, "is required")
        return where, value

    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return None
        return value

    def string(
        self,
        o: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        max_len: int | None = None,
        choices: tuple[str, ...] = (),
    ) -> str | None:
        where, value = self.field(o, key, path, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(where, "must be a string")
            return None
        if choices and value not in choices:
            self.add(where, f"must be one of: {', '.join(choices)}")
            return None
        if required and not value:
            self.add(where, "must not be empty")
            return None
        if max_len is not None and utf16_length(value) > max_len:
            self.add(
                where,
                f"must be at most {max_len:,} characters (UTF-16 code units); "
                f"this has {utf16_length(value):,}",
            )
        return value

    def url(
        self,
        o: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        schemes: tuple[str, ...] = ("https",),
        max_len: int = MAX_URL_LENGTH,
    ) -> None:
        where, value = self.field(o, key, path, required)
        if value is None:
            return
        problem = url_problem(value, schemes, max_len)
        if problem:
            self.add(where, problem)

    def integer(
        self,
        o: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        where, value = self.field(o, key, path, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(where, "must be an integer")
            return None
        if minimum is not None and value < minimum:
            self.add(where, f"must be at least {minimum}")
        elif maximum is not None and value > maximum:
            self.add(where, f"must be at most {maximum}")
        return value

    def array(
        self,
        o: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        min_items: int = 1,
        max_items: int | None = None,
    ) -> list[Any]:
        where, value = self.field(o, key, path, required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(where, "must be an array")
            return []
        if len(value) < min_items or (max_items is not None and len(value) > max_items):
            most = f" and {max_items}" if max_items is not None else " or more"
            self.add(where, f"must hold between {min_items}{most} items; it has {len(value)}")
        return value

    # --- actions

    def action(
        self,
        value: Any,
        path: str,
        *,
        allowed: tuple[str, ...] = _CARD_ACTIONS,
        label_required: bool = False,
        max_label: int = 20,
    ) -> None:
        a = self.obj(value, path)
        if a is None:
            return
        kind = self.string(a, "type", path, choices=allowed)
        self.string(a, "label", path, required=label_required, max_len=max_label)
        if kind == "postback":
            self.string(a, "data", path, max_len=300)
            self.string(a, "displayText", path, required=False, max_len=300)
            self.string(a, "text", path, required=False, max_len=300)
        elif kind == "message":
            self.string(a, "text", path, max_len=300)
        elif kind == "uri":
            self.url(a, "uri", path, schemes=LINK_SCHEMES, max_len=MAX_LINK_LENGTH)
        elif kind == "datetimepicker":
            self.string(a, "data", path, max_len=300)
            self.string(a, "mode", path, choices=("date", "time", "datetime"))
        elif kind == "clipboard":
            self.string(a, "clipboardText", path, max_len=1_000)


def url_problem(value: Any, schemes: tuple[str, ...], max_len: int) -> str | None:
    """What is wrong with `value` as a URL LINE takes, or None."""
    names = " or ".join(s.upper() if s.startswith("http") else s for s in schemes)
    if not isinstance(value, str) or not value:
        return f"must be a {names} URL"
    if len(value) > max_len:
        return f"must be at most {max_len:,} characters; this URL has {len(value):,}"
    if any(not ("!" <= c <= "~") for c in value):
        return "must not contain spaces or non-ASCII characters; percent-encode them"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return f"must be a well-formed {names} URL"
    if parts.scheme.lower() not in schemes:
        starts = ", ".join(f"{s}:" for s in schemes)
        return f"must be a {names} URL (starting with {starts})"
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        return f"must be a {names} URL with a host name"
    return None


# --- message types


def _emojis(c: _Checker, text: str | None, emojis: Any, path: str) -> None:
    """LINE emoji: each at the UTF-16 index of a `$` of the text, at most 20, none twice."""
    if emojis is None:
        return
    if not isinstance(emojis, list):
        c.add(path, "must be an array")
        return
    if len(emojis) > MAX_EMOJIS:
        c.add(path, f"must hold at most {MAX_EMOJIS} emoji; it has {len(emojis)}")
    units = text.encode("utf-16-le", "surrogatepass") if text else b""
    dollars = {i // 2 for i in range(0, len(units), 2) if units[i : i + 2] == b"$\x00"}
    seen: set[int] = set()
    for j, e in enumerate(emojis):
        where = f"{path}[{j}]"
        item = c.obj(e, where)
        if item is None:
            continue
        index = c.integer(item, "index", where, minimum=0)
        c.string(item, "productId", where, max_len=100)
        c.string(item, "emojiId", where, max_len=100)
        if index is None:
            continue
        if index not in dollars:
            c.add(f"{where}.index", "must be the position of a $ in the text (UTF-16 code units)")
        elif index in seen:
            c.add(f"{where}.index", "names a $ another emoji already takes")
        seen.add(index)


def check_emojis(text: str, emojis: list[dict[str, Any]], path: str) -> list[FieldViolation]:
    """Violations of LINE's emoji rules for `emojis` (LINE's JSON) in `text`."""
    c = _Checker()
    _emojis(c, text, emojis, path)
    return c.found


def _text(c: _Checker, m: dict[str, Any], path: str) -> None:
    text = c.string(m, "text", path, max_len=MAX_TEXT_UTF16)
    _emojis(c, text, m.get("emojis"), f"{path}.emojis")


def _area(c: _Checker, value: Any, path: str) -> None:
    a = c.obj(value, path)
    if a is not None:
        for key in ("x", "y"):
            c.integer(a, key, path, minimum=0)
        for key in ("width", "height"):
            c.integer(a, key, path, minimum=1)


def _imagemap(c: _Checker, m: dict[str, Any], path: str) -> None:
    c.url(m, "baseUrl", path)
    c.string(m, "altText", path, max_len=MAX_ALT_TEXT)
    size = c.obj(m.get("baseSize"), f"{path}.baseSize")
    if size is not None:
        c.integer(
            size,
            "width",
            f"{path}.baseSize",
            minimum=IMAGEMAP_BASE_WIDTH,
            maximum=IMAGEMAP_BASE_WIDTH,
        )
        c.integer(size, "height", f"{path}.baseSize", minimum=1)
    for i, value in enumerate(
        c.array(m, "actions", path, min_items=1, max_items=MAX_IMAGEMAP_ACTIONS)
    ):
        where = f"{path}.actions[{i}]"
        a = c.obj(value, where)
        if a is None:
            continue
        kind = c.string(a, "type", where, choices=("uri", "message", "clipboard"))
        c.string(a, "label", where, required=False, max_len=100)
        _area(c, a.get("area"), f"{where}.area")
        if kind == "uri":
            c.url(a, "linkUri", where, schemes=LINK_SCHEMES, max_len=MAX_LINK_LENGTH)
        elif kind == "message":
            c.string(a, "text", where, max_len=400)
        elif kind == "clipboard":
            c.string(a, "clipboardText", where, max_len=1_000)
    if "video" in m:
        where = f"{path}.video"
        v = c.obj(m["video"], where)
        if v is not None:
            c.url(v, "originalContentUrl", where)
            c.url(v, "previewImageUrl", where)
            _area(c, v.get("area"), f"{where}.area")
            if "externalLink" in v:
                link_path = f"{where}.externalLink"
                link = c.obj(v["externalLink"], link_path)
                if link is not None:
                    c.url(link, "linkUri", link_path, schemes=LINK_SCHEMES, max_len=MAX_LINK_LENGTH)
                    c.string(link, "label", link_path, max_len=30)


def _actions(
    c: _Checker, o: dict[str, Any], path: str, *, min_items: int, max_items: int
) -> list[Any]:
    found = c.array(o, "actions", path, min_items=min_items, max_items=max_items)
    for i, a in enumerate(found):
        c.action(a, f"{path}.actions[{i}]", label_required=True)
    return found


def _template(c: _Checker, m: dict[str, Any], path: str) -> None:
    c.string(m, "altText", path, max_len=MAX_TEMPLATE_ALT_TEXT)
    where = f"{path}.template"
    t = c.obj(m.get("template"), where)
    if t is None:
        return
    kind = c.string(t, "type", where, choices=("buttons", "confirm", "carousel", "image_carousel"))
    if kind == "buttons":
        c.url(t, "thumbnailImageUrl", where, required=False)
        c.string(t, "imageAspectRatio", where, required=False, choices=("rectangle", "square"))
        c.string(t, "imageSize", where, required=False, choices=("cover", "contain"))
        c.string(t, "title", where, required=False, max_len=40)
        short = "thumbnailImageUrl" in t or "title" in t
        c.string(t, "text", where, max_len=60 if short else 160)
        if "defaultAction" in t:
            c.action(t["defaultAction"], f"{where}.defaultAction")
        _actions(c, t, where, min_items=1, max_items=4)
    elif kind == "confirm":
        c.string(t, "text", where, max_len=240)
        _actions(c, t, where, min_items=2, max_items=2)
    elif kind == "carousel":
        c.string(t, "imageAspectRatio", where, required=False, choices=("rectangle", "square"))
        c.string(t, "imageSize", where, required=False, choices=("cover", "contain"))
        columns = c.array(t, "columns", where, max_items=MAX_TEMPLATE_COLUMNS)
        counts: set[int] = set()
        for i, value in enumerate(columns):
            col_path = f"{where}.columns[{i}]"
            col = c.obj(value, col_path)
            if col is None:
                continue
            c.url(col, "thumbnailImageUrl", col_path, required=False)
            c.string(col, "title", col_path, required=False, max_len=40)
            short = "thumbnailImageUrl" in col or "title" in col
            c.string(col, "text", col_path, max_len=60 if short else 120)
            if "defaultAction" in col:
                c.action(col["defaultAction"], f"{col_path}.defaultAction")
            counts.add(len(_actions(c, col, col_path, min_items=1, max_items=3)))
        if len(counts) > 1:
            c.add(f"{where}.columns", "every column must have the same number of actions")
    elif kind == "image_carousel":
        columns = c.array(t, "columns", where, max_items=MAX_TEMPLATE_COLUMNS)
        for i, value in enumerate(columns):
            col_path = f"{where}.columns[{i}]"
            col = c.obj(value, col_path)
            if col is not None:
                c.url(col, "imageUrl", col_path)
                c.action(col.get("action"), f"{col_path}.action", max_label=12)


_FLEX_LEAVES: dict[str, Callable[[_Checker, dict[str, Any], str], None]] = {}


def _flex_component(c: _Checker, value: Any, path: str) -> None:
    comp = c.obj(value, path)
    if comp is None:
        return
    kinds = ("box", "button", "image", "video", "icon", "text", "span", "separator", "filler")
    kind = c.string(comp, "type", path, choices=kinds)
    if "action" in comp and kind != "button":
        c.action(comp["action"], f"{path}.action")
    if kind == "box":
        _flex_box(c, comp, path)
    elif kind is not None and kind in _FLEX_LEAVES:
        _FLEX_LEAVES[kind](c, comp, path)


def _flex_box(c: _Checker, box: dict[str, Any], path: str) -> None:
    # (The API's protobuf parsing bounds how deep boxes can nest, so the walk ends.)
    c.string(box, "layout", path, choices=("horizontal", "vertical", "baseline"))
    for i, child in enumerate(c.array(box, "contents", path, min_items=0)):
        _flex_component(c, child, f"{path}.contents[{i}]")


def _flex_text(c: _Checker, comp: dict[str, Any], path: str) -> None:
    spans = comp.get("contents")
    if spans:
        for i, span in enumerate(c.array(comp, "contents", path)):
            s = c.obj(span, f"{path}.contents[{i}]")
            if s is not None:
                c.string(s, "type", f"{path}.contents[{i}]", choices=("span",))
                c.string(s, "text", f"{path}.contents[{i}]")
    else:
        c.string(comp, "text", path)


def _flex_image(c: _Checker, comp: dict[str, Any], path: str) -> None:
    c.url(comp, "url", path)


def _flex_button(c: _Checker, comp: dict[str, Any], path: str) -> None:
    c.action(comp.get("action"), f"{path}.action", label_required=True, max_label=40)
    c.string(comp, "style", path, required=False, choices=("primary", "secondary", "link"))


def _flex_video(c: _Checker, comp: dict[str, Any], path: str) -> None:
    c.url(comp, "url", path)
    c.url(comp, "previewUrl", path)
    _flex_component(c, comp.get("altContent"), f"{path}.altContent")


def _flex_span(c: _Checker, comp: dict[str, Any], path: str) -> None:
    c.string(comp, "text", path)


_FLEX_LEAVES.update(
    text=_flex_text,
    image=_flex_image,
    icon=_flex_image,
    button=_flex_button,
    video=_flex_video,
    span=_flex_span,
)


def _flex_bubble(c: _Checker, value: Any, path: str) -> None:
    bubble = c.obj(value, path)
    if bubble is None:
        return
    c.string(bubble, "type", path, choices=("bubble",))
    sizes = ("nano", "micro", "deca", "hecto", "kilo", "mega", "giga")
    c.string(bubble, "size", path, required=False, choices=sizes)
    c.string(bubble, "direction", path, required=False, choices=("ltr", "rtl"))
    blocks = [k for k in ("header", "hero", "body", "footer") if k in bubble]
    if not blocks:
        c.add(path, "must have at least one of header, hero, body, footer")
    for block in blocks:
        where = f"{path}.{block}"
        if block == "hero":
            _flex_component(c, bubble[block], where)
            continue
        box = c.obj(bubble[block], where)
        if box is not None:
            c.string(box, "type", where, choices=("box",))
            _flex_box(c, box, where)
    if "action" in bubble:
        c.action(bubble["action"], f"{path}.action")


def _flex(c: _Checker, m: dict[str, Any], path: str) -> None:
    c.string(m, "altText", path, max_len=MAX_ALT_TEXT)
    where = f"{path}.contents"
    contents = c.obj(m.get("contents"), where)
    if contents is None:
        return
    kind = c.string(contents, "type", where, choices=("bubble", "carousel"))
    size = len(json.dumps(contents, ensure_ascii=False, separators=(",", ":")).encode())
    if kind == "bubble":
        _flex_bubble(c, contents, where)
        if size > MAX_FLEX_BYTES:
            c.add(
                where, f"a bubble must be at most {MAX_FLEX_BYTES:,} bytes of JSON; it has {size:,}"
            )
    elif kind == "carousel":
        bubbles = c.array(contents, "contents", where, max_items=MAX_FLEX_BUBBLES)
        for i, bubble in enumerate(bubbles):
            _flex_bubble(c, bubble, f"{where}.contents[{i}]")
        if size > MAX_FLEX_CAROUSEL_BYTES:
            c.add(
                where,
                f"a carousel must be at most {MAX_FLEX_CAROUSEL_BYTES:,} bytes of JSON; "
                f"it has {size:,}",
            )


def _quick_reply(c: _Checker, value: Any, path: str) -> None:
    qr = c.obj(value, path)
    if qr is None:
        return
    for i, item_value in enumerate(
        c.array(qr, "items", path, min_items=1, max_items=MAX_QUICK_REPLY_ITEMS)
    ):
        where = f"{path}.items[{i}]"
        item = c.obj(item_value, where)
        if item is None:
            continue
        c.string(item, "type", where, required=False, choices=("action",))
        c.url(item, "imageUrl", where, required=False)
        c.action(item.get("action"), f"{where}.action", allowed=_ACTION_TYPES, label_required=True)


_BY_TYPE: dict[str, Callable[[_Checker, dict[str, Any], str], None]] = {
    "text": _text,
    "imagemap": _imagemap,
    "template": _template,
    "flex": _flex,
}


def validate_native(message: Mapping[str, Any], path: str) -> list[FieldViolation]:
    """Every way the LINE message object `message` breaks LINE's rules; `path` names it
    (`messages[2].channel_native`)."""
    c = _Checker()
    m = c.obj(message, path)
    if m is None:
        return c.found
    kind = c.string(m, "type", path, choices=NATIVE_TYPES)
    if kind is not None:
        _BY_TYPE[kind](c, m, path)
    if "quickReply" in m:
        _quick_reply(c, m["quickReply"], f"{path}.quickReply")
    return c.found


def preview_native(message: Mapping[str, Any]) -> str:
    """A valid native bubble as plain text: `[Card] <altText>` (with the number of items of a
    carousel), `[Rich message] <altText>` for an imagemap, the text of a text."""
    kind = message.get("type")
    if kind == "text":
        return shorten(str(message.get("text", "")))
    alt = shorten(str(message.get("altText", "")), 80)
    if kind == "imagemap":
        return f"[Rich message] {alt}"
    items = 0
    if kind == "flex":
        contents = message.get("contents") or {}
        if contents.get("type") == "carousel":
            items = len(contents.get("contents") or [])
    elif kind == "template":
        template = message.get("template") or {}
        if template.get("type") in ("carousel", "image_carousel"):
            items = len(template.get("columns") or [])
    return f"[Card] {alt} — {items} items" if items else f"[Card] {alt}"
