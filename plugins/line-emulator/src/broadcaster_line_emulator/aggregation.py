"""Statistics per aggregation unit: the unit names a channel used this month, and synthetic but
deterministic engagement for what was sent under each unit.

LINE counts opens, clicks and plays of push and multicast messages sent with
`customAggregationUnits`; the emulator has no users to open anything, so it derives the figures
from what it delivered: of a send's recipients, a seeded share opens it (`Engagement.open_rate`),
clicks one of its URLs (`click_rate`, a share of all recipients) and plays its video or audio
(`play_rate`). The figures arrive over time after the send, as LINE's do (opens spread with a
time constant of `Engagement.arrival_hours`), stop changing 14 days after it, and a figure below
LINE's privacy threshold is withheld as null."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .deliveries import SendRecord

# LINE's month and aggregation dates are Japan Standard Time (UTC+9, no daylight saving).
JST = timezone(timedelta(hours=9))
# A channel may use this many different unit names per month (reset on the 1st, JST).
MONTHLY_UNIT_ALLOWANCE = 1_000
# One unit name per push or multicast request.
MAX_UNITS_PER_REQUEST = 1
# Unit names: 1-30 of a-z, A-Z, 0-9 and underscore; case-sensitive.
UNIT_NAME = re.compile(r"[a-zA-Z0-9_]{1,30}")
# A figure under 20, or counted from fewer than 20 people, is withheld (null).
PRIVACY_THRESHOLD = 20
# Interactions are counted for 14 days (1,209,600 s) after a message was sent, then frozen.
INTERACTION_WINDOW = 14 * 24 * 60 * 60.0
# The aggregation period's end may be at most 30 days after its start.
MAX_PERIOD_DAYS = 30
# Unit name list paging: `limit` defaults to 100, at most 100.
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 100
# LINE's 400 for the insight endpoint carries no message at all.
INSIGHT_ERROR_BODY: Mapping[str, Any] = {
    "message": None,
    "key": None,
    "stacktrace": None,
    "code": None,
}
# What the emulator answers when a send would use one unit name more than the allowance. LINE
# documents the limit but not its error text; this is its usual 400 shape naming the property.
UNIT_LIMIT_MESSAGE = "The number of aggregation units used this month has reached the limit"
_MEDIA = frozenset({"video", "audio"})


@dataclass(frozen=True)
class Engagement:
    """How recipients of a send under a unit behave. Rates are shares of the recipients."""

    open_rate: float = 0.4
    click_rate: float = 0.07
    play_rate: float = 0.15  # of recipients, for a message with video or audio
    # Opens (and with them clicks and plays) arrive as 1 - exp(-t / arrival_hours).
    arrival_hours: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("open_rate", "click_rate", "play_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.click_rate > self.open_rate or self.play_rate > self.open_rate:
            raise ValueError("only people who open a message click or play it")
        if self.arrival_hours <= 0:
            raise ValueError("arrival_hours must be positive")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Engagement:
        names = {
            "openRate": "open_rate",
            "clickRate": "click_rate",
            "playRate": "play_rate",
            "arrivalHours": "arrival_hours",
            "seed": "seed",
        }
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown engagement settings: {sorted(unknown)}")
        return cls(**{names[k]: v for k, v in data.items()})

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        return {
            "openRate": raw["open_rate"],
            "clickRate": raw["click_rate"],
            "playRate": raw["play_rate"],
            "arrivalHours": raw["arrival_hours"],
            "seed": raw["seed"],
        }


def jst_month(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, JST).strftime("%Y%m")


@dataclass(eq=False)
class UnitLedger:
    """The unit names one channel used, month by month (JST), in first-use order."""

    allowance: int = MONTHLY_UNIT_ALLOWANCE
    _months: dict[str, dict[str, None]] = field(default_factory=dict)

    def used(self, now: float) -> list[str]:
        return list(self._months.get(jst_month(now), {}))

    def admits(self, unit: str, now: float) -> bool:
        """Whether a send may use `unit` now: it was used this month, or there is room."""
        names = self._months.get(jst_month(now), {})
        return unit in names or len(names) < self.allowance

    def record(self, unit: str, now: float) -> None:
        self._months.setdefault(jst_month(now), {})[unit] = None


def parse_day(value: str) -> datetime | None:
    """A `yyyyMMdd` date as the start of that day in JST."""
    if not re.fullmatch(r"[0-9]{8}", value):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d").replace(tzinfo=JST)
    except ValueError:
        return None


# -- URLs a message carries --------------------------------------------------------------------


def _uris(node: Any) -> Iterator[str]:
    """URI actions anywhere in a message object: templates, imagemaps (`linkUri`), flex,
    quick replies. A URL typed into a text bubble is not an action: LINE does not count it."""
    if isinstance(node, dict):
        if node.get("type") == "uri":
            uri = node.get("uri", node.get("linkUri"))
            if isinstance(uri, str):
                yield uri
        for value in node.values():
            yield from _uris(value)
    elif isinstance(node, list):
        for item in node:
            yield from _uris(item)


def message_urls(message: Mapping[str, Any]) -> list[str]:
    """The distinct URLs of one message object, in order of appearance."""
    return list(dict.fromkeys(_uris(message)))


# -- figures -----------------------------------------------------------------------------------


def _unit_float(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass
class _Tally:
    unique: int = 0
    total: int = 0


@dataclass
class _Figures:
    opened: int = 0
    clicked: int = 0
    played: int = 0
    played_through: int = 0
    bubbles: dict[int, dict[str, _Tally]] = field(default_factory=dict)
    clicks: dict[tuple[int, str], _Tally] = field(default_factory=dict)
    url_people: dict[str, int] = field(default_factory=dict)


def _arrived(engagement: Engagement, elapsed: float) -> float:
    """The share of a send's eventual interactions that happened `elapsed` seconds after it."""
    if elapsed <= 0:
        return 0.0
    elapsed = min(elapsed, INTERACTION_WINDOW)
    return 1.0 - math.exp(-elapsed / (engagement.arrival_hours * 3600.0))


def _add(tally: dict[str, _Tally], name: str, unique: int, repeat: float) -> None:
    entry = tally.setdefault(name, _Tally())
    entry.unique += unique
    entry.total += unique + math.floor(unique * repeat)


def _send_figures(send: SendRecord, engagement: Engagement, now: float, out: _Figures) -> None:
    reached = len(send.recipients)
    share = _arrived(engagement, now - send.accepted_at)
    if not reached or share <= 0:
        return
    key = (engagement.seed, send.request_id)
    jitter = 0.9 + 0.2 * _unit_float(*key, "jitter")  # +-10 % per send, fixed
    opened = min(reached, math.floor(reached * engagement.open_rate * jitter * share))
    clicked = min(opened, math.floor(reached * engagement.click_rate * jitter * share))
    out.opened += opened
    has_media = False
    urls: list[tuple[int, str]] = []
    for seq, message in enumerate(send.messages, start=1):
        bubble = out.bubbles.setdefault(seq, {})
        seen = math.floor(opened * (1.0 - 0.05 * (seq - 1)))  # later bubbles are seen less
        _add(bubble, "impression", seen, 0.15)
        if message.get("type") in _MEDIA:
            has_media = True
            players = min(seen, math.floor(reached * engagement.play_rate * jitter * share))
            for name, kept in (
                ("mediaPlayed", 1.0),
                ("mediaPlayed25Percent", 0.8),
                ("mediaPlayed50Percent", 0.6),
                ("mediaPlayed75Percent", 0.45),
                ("mediaPlayed100Percent", 0.35),
            ):
                _add(bubble, name, math.floor(players * kept), 0.2)
        urls.extend((seq, url) for url in message_urls(message))
    if has_media:
        played = min(opened, math.floor(reached * engagement.play_rate * jitter * share))
        out.played += played
        out.played_through += math.floor(played * 0.35)
    if not urls:
        return
    out.clicked += clicked
    # Each clicker opens one URL, picked by fixed weights, and some open it again.
    weights = [0.5 + _unit_float(*key, seq, url) for seq, url in urls]
    total_weight = sum(weights)
    given = 0
    for i, ((seq, url), weight) in enumerate(zip(urls, weights, strict=True)):
        people = (
            clicked - given if i == len(urls) - 1 else math.floor(clicked * weight / total_weight)
        )
        given += people
        tally = out.clicks.setdefault((seq, url), _Tally())
        tally.unique += people
        tally.total += people + math.floor(people * 0.3)
        out.url_people[url] = out.url_people.get(url, 0) + people


def _shown(count: int, people: int | None = None) -> int | None:
    """A figure as LINE reports it: null below the threshold, or counted from too few people."""
    if count < PRIVACY_THRESHOLD or (people is not None and people < PRIVACY_THRESHOLD):
        return None
    return count


def statistics(sends: Iterable[SendRecord], engagement: Engagement, now: float) -> dict[str, Any]:
    """The body of "Get statistics per unit" for `sends` (those under the unit in the period)."""
    figures = _Figures()
    for send in sends:
        _send_figures(send, engagement, now, figures)
    overview = {
        "uniqueImpression": _shown(figures.opened),
        "uniqueClick": _shown(figures.clicked),
        "uniqueMediaPlayed": _shown(figures.played),
        "uniqueMediaPlayed100Percent": _shown(figures.played_through),
    }
    if figures.opened < PRIVACY_THRESHOLD:  # "If the statistic isn't available": empty arrays
        return {"overview": overview, "messages": [], "clicks": []}
    messages = []
    for seq, tally in sorted(figures.bubbles.items()):
        shown = tally.get("impression", _Tally())
        entry: dict[str, Any] = {
            "seq": seq,
            "impression": _shown(shown.total, shown.unique),
            "uniqueImpression": _shown(shown.unique),
        }
        for name in (
            "mediaPlayed",
            "mediaPlayed25Percent",
            "mediaPlayed50Percent",
            "mediaPlayed75Percent",
            "mediaPlayed100Percent",
        ):
            count = tally.get(name)
            unique_name = "unique" + name[0].upper() + name[1:]
            entry[name] = None if count is None else _shown(count.total, count.unique)
            entry[unique_name] = None if count is None else _shown(count.unique)
        messages.append(entry)
    clicks = [
        {
            "seq": seq,
            "url": url,
            "click": _shown(tally.total, tally.unique),
            "uniqueClick": _shown(tally.unique),
            "uniqueClickOfRequest": _shown(figures.url_people[url]),
        }
        for (seq, url), tally in sorted(figures.clicks.items())
    ]
    return {"overview": overview, "messages": messages, "clicks": clicks}


def sends_in_period(
    sends: Sequence[SendRecord], unit: str, start: datetime, end: datetime
) -> list[SendRecord]:
    """The sends under `unit` made from the start of day `start` to the end of day `end`."""
    first, last = start.timestamp(), (end + timedelta(days=1)).timestamp()
    return [s for s in sends if s.unit == unit and first <= s.accepted_at < last]


def today_jst(now: float) -> datetime:
    day = datetime.fromtimestamp(now, UTC).astimezone(JST)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)
