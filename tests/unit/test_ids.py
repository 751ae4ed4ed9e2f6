from __future__ import annotations

import re

from broadcaster.domain.ids import new_id, new_ids


def test_ids_increase_within_a_millisecond() -> None:
    made = [new_id() for _ in range(1000)] + new_ids(1000) + [new_id()]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{26}", i) for i in made)
