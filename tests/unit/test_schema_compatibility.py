"""The expand/contract rule without a database: every migration declares its kind, each
revision's oldest compatible one follows from the declarations, and the verdict on a schema
names both schemas."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from broadcaster.store import migrate
from broadcaster.store.compatibility import Schema, judge


@dataclass
class _Script:
    revision: str
    # "contract:0002": a contract migration compatible with 0002; a dict: a kind per dialect
    kind: str | dict[str, str] | None

    @property
    def module(self) -> Any:
        if self.kind is None:
            return SimpleNamespace()
        if isinstance(self.kind, dict):
            return SimpleNamespace(kind=self.kind)
        kind, _, compatible_with = self.kind.partition(":")
        return SimpleNamespace(kind=kind, compatible_with=compatible_with or None)


class _Scripts:
    def __init__(self, *kinds: str | dict[str, str] | None) -> None:
        self._scripts = [_Script(f"{n + 1:04d}", kind) for n, kind in enumerate(kinds)]

    def walk_revisions(self) -> list[_Script]:
        return list(reversed(self._scripts))  # newest first, as alembic walks


def _oldest(*kinds: str | dict[str, str] | None, dialect: str = "sqlite") -> dict[str, str]:
    return migrate.oldest_compatible(cast(ScriptDirectory, _Scripts(*kinds)), dialect)


def test_every_migration_declares_expand_or_contract() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config(create_engine("sqlite://")))
    for dialect in ("sqlite", "postgresql"):
        kinds = {s.revision: migrate.kind_of(s.module, dialect) for s in scripts.walk_revisions()}
        assert set(kinds.values()) <= set(migrate.KINDS), kinds
        assert migrate.oldest_compatible(scripts, dialect)["0021"] == "0014"


def test_the_oldest_compatible_revision_is_the_last_contract_one() -> None:
    assert _oldest("contract", "expand", "contract", "expand", "expand") == {
        "0001": "0001",
        "0002": "0001",
        "0003": "0003",
        "0004": "0003",
        "0005": "0003",
    }
    assert _oldest("expand", "expand") == {"0001": "0001", "0002": "0001"}


def test_a_migration_may_contract_on_one_database_and_expand_on_the_other() -> None:
    """As one that moves where SQLite keeps data and leaves PostgreSQL's layout as it was: the
    release before it keeps running on PostgreSQL only."""
    kinds = ("contract", "expand", {"sqlite": "contract", "postgresql": "expand"}, "expand")
    assert _oldest(*kinds, dialect="sqlite") == {
        "0001": "0001",
        "0002": "0001",
        "0003": "0003",
        "0004": "0003",
    }
    assert _oldest(*kinds, dialect="postgresql") == {
        "0001": "0001",
        "0002": "0001",
        "0003": "0001",
        "0004": "0001",
    }
    with pytest.raises(ValueError, match="on postgresql"):
        _oldest("contract", {"sqlite": "expand"}, dialect="postgresql")


def test_a_contract_migration_may_keep_the_release_before_it_running() -> None:
    """Release 0002 stopped using what 0003 removes: 0002's code runs on 0003 and after, not
    0001's."""
    assert _oldest("contract", "expand", "contract:0002", "expand") == {
        "0001": "0001",
        "0002": "0001",
        "0003": "0002",
        "0004": "0002",
    }
    with pytest.raises(ValueError, match="migration 0002 declares compatible_with='0003'"):
        _oldest("contract", "contract:0003", "expand")


@pytest.mark.parametrize("kind", [None, "additive"])
def test_a_migration_without_a_valid_kind_is_refused(kind: str | None) -> None:
    with pytest.raises(ValueError, match=f"migration 0002 declares kind={kind!r}"):
        _oldest("contract", kind)


KNOWN = frozenset({"0001", "0002", "0003"})  # a build at 0003


def test_at_its_head_it_runs() -> None:
    verdict = judge(Schema("0003"), "0003", KNOWN)
    assert (verdict.runs, verdict.newer, verdict.says) == (True, False, "")


@pytest.mark.parametrize("at", ["0002", None])
def test_at_an_older_schema_it_asks_for_migrate(at: str | None) -> None:
    verdict = judge(Schema(at), "0003", KNOWN)
    assert (verdict.runs, verdict.newer) == (False, False)
    assert verdict.says.endswith("this version needs 0003: run `broadcaster migrate` first")


@pytest.mark.parametrize("oldest", ["0001", "0003"])
def test_newer_and_declared_compatible_it_runs(oldest: str) -> None:
    verdict = judge(Schema("0005", oldest), "0003", KNOWN)
    assert (verdict.runs, verdict.newer) == (True, True)
    assert "schema 0005" in verdict.says and "0003" in verdict.says


def test_newer_after_a_contract_migration_it_does_not_run() -> None:
    verdict = judge(Schema("0005", "0004"), "0003", KNOWN)
    assert (verdict.runs, verdict.newer) == (False, True)
    assert "schema 0005" in verdict.says and "(schema 0003)" in verdict.says
    assert "from schema 0004" in verdict.says


def test_newer_and_undeclared_it_does_not_run() -> None:
    verdict = judge(Schema("0005"), "0003", KNOWN)
    assert (verdict.runs, verdict.newer) == (False, True)
    assert "schema 0005" in verdict.says and "(schema 0003)" in verdict.says
