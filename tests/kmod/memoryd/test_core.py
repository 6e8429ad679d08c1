from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aios.abi.errors import (
    AlreadyExists,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
)
from aios.kmod.memoryd.core import MemoryCore, MemRight, Retention, Tier, as_rights
from aios.lib.vectors.embedding import HashingEmbedder

ALL = MemRight.ALL
RO = MemRight.READ
RW = MemRight.READ | MemRight.WRITE


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(clock: FakeClock) -> MemoryCore:
    m = MemoryCore(None, HashingEmbedder(), clock=clock)
    m.create_namespace("alice", "alice/notes")
    return m


def test_rights_from_names_and_flags() -> None:
    assert as_rights({"read", "write"}) == RW
    assert as_rights(frozenset()) == MemRight.NONE
    assert as_rights(MemRight.GRANT) == MemRight.GRANT
    with pytest.raises(InvalidArgument):
        as_rights({"execute"})


def test_no_rights_cannot_read_or_search(mem: MemoryCore) -> None:
    rec = mem.put("alice/notes", ALL, "the launch code is in the blue folder")
    for call in (
        lambda: mem.get("alice/notes", MemRight.NONE, rec.id),
        lambda: mem.search({"alice/notes": frozenset()}, "launch code"),
        lambda: mem.records("alice/notes", frozenset()),
        lambda: mem.recall_search("alice/notes", MemRight.WRITE, "x"),
        lambda: mem.core_list("alice/notes", MemRight.WRITE),
    ):
        with pytest.raises(PermissionDenied):
            call()


def test_read_only_cannot_write(mem: MemoryCore) -> None:
    rec = mem.put("alice/notes", ALL, "first passage")
    assert mem.get("alice/notes", RO, rec.id).text == "first passage"
    with pytest.raises(PermissionDenied, match="write"):
        mem.put("alice/notes", RO, "sneaky")
    with pytest.raises(PermissionDenied):
        mem.delete("alice/notes", {"read"}, rec.id)
    with pytest.raises(PermissionDenied):
        mem.core_set("alice/notes", RO, "persona", "x")
    assert mem.usage("alice/notes").items == 1


def test_revocation_is_the_next_call(mem: MemoryCore) -> None:
    mem.put("alice/notes", ALL, "shared finding about the market")
    rights = {"read"}
    assert mem.search({"alice/notes": rights}, "market")
    rights = set()  # the kernel revoked the capability
    with pytest.raises(PermissionDenied):
        mem.search({"alice/notes": rights}, "market")


def test_grant_only_narrows() -> None:
    assert MemoryCore.authorize_grant(ALL, RO) == RO
    with pytest.raises(PermissionDenied):
        MemoryCore.authorize_grant(RW, RO)
    with pytest.raises(PermissionDenied):
        MemoryCore.authorize_grant(MemRight.READ | MemRight.GRANT, RW)


def test_search_over_a_set_of_namespaces_needs_read_on_each(mem: MemoryCore) -> None:
    mem.create_namespace("bob", "bob/findings")
    mem.put("alice/notes", ALL, "paris hotel prices rose in june", meta={"topic": "travel"})
    mem.put("bob/findings", ALL, "hotel prices in paris are high in summer", meta={"topic": "travel"})
    mem.put("bob/findings", ALL, "the cat sat on the mat", meta={"topic": "pets"})
    hits = mem.search({"alice/notes": RO, "bob/findings": RO}, "paris hotel prices", k=2)
    assert {h.record.namespace for h in hits} == {"alice/notes", "bob/findings"}
    assert hits[0].score >= hits[1].score
    only_pets = mem.search({"bob/findings": RO}, "paris hotel", k=5, filters={"topic": "pets"})
    assert [h.record.text for h in only_pets] == ["the cat sat on the mat"]
    with pytest.raises(PermissionDenied):
        mem.search({"alice/notes": RO, "bob/findings": MemRight.WRITE}, "paris")
    with pytest.raises(NoSuchObject):
        mem.search({"nobody/ns": RO}, "paris")


def test_vector_query_and_bad_vectors(mem: MemoryCore) -> None:
    r = mem.put("alice/notes", ALL, "anything", vector=np.eye(384, dtype=np.float32)[3] * 5)
    hits = mem.search({"alice/notes": RO}, np.eye(384)[3], k=1)
    assert hits[0].record.id == r.id and hits[0].score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InvalidArgument):
        mem.search({"alice/notes": RO}, np.zeros(384))
    with pytest.raises(InvalidArgument):
        mem.put("alice/notes", ALL, "x", vector=np.ones(12))


def test_core_blocks_are_editable_with_history(mem: MemoryCore) -> None:
    mem.core_set("alice/notes", ALL, "persona", "I am a careful travel agent.", limit=60)
    mem.core_append("alice/notes", ALL, "persona", "I like trains.")
    b = mem.core_replace("alice/notes", ALL, "persona", "careful", "meticulous")
    assert b.value == "I am a meticulous travel agent.\nI like trains." and b.version == 3
    hist = mem.core_history("alice/notes", RO, "persona")
    assert [h.version for h in hist] == [1, 2, 3]
    assert hist[0].value == "I am a careful travel agent."
    with pytest.raises(InvalidArgument, match="limited to 60"):
        mem.core_append("alice/notes", ALL, "persona", "x" * 60)
    assert mem.core_get("alice/notes", RO, "persona").version == 3
    with pytest.raises(NoSuchObject):
        mem.core_replace("alice/notes", ALL, "persona", "absent text", "y")
    with pytest.raises(InvalidArgument):
        mem.core_set("alice/notes", ALL, "bad label!", "v")
    mem.core_delete("alice/notes", ALL, "persona")
    with pytest.raises(NoSuchObject):
        mem.core_get("alice/notes", RO, "persona")


def test_recall_by_text_and_time(mem: MemoryCore, clock: FakeClock) -> None:
    mem.recall_append("alice/notes", ALL, "user", "Please book a table for two at the bistro")
    clock.t += 100
    mem.recall_append("alice/notes", ALL, "assistant", "Booked the bistro for 8pm")
    clock.t += 100
    mem.recall_append("alice/notes", ALL, "user", "What is the weather tomorrow?")
    by_text = mem.recall_search("alice/notes", RO, "bistro booking")
    assert {r.text for r in by_text} == {"Please book a table for two at the bistro",
                                         "Booked the bistro for 8pm"}
    recent = mem.recall_search("alice/notes", RO, since=1_050.0)
    assert [r.text for r in recent] == ["What is the weather tomorrow?", "Booked the bistro for 8pm"]
    users = mem.recall_search("alice/notes", RO, "bistro", role="user")
    assert len(users) == 1 and users[0].role == "user"
    assert mem.recall_search("alice/notes", RO, "bistro", until=1_050.0)[0].role == "user"
    # recall is not in the archival vector index
    assert mem.search({"alice/notes": RO}, "bistro") == []


def test_ttl_hides_then_compaction_removes(mem: MemoryCore, clock: FakeClock) -> None:
    short = mem.put("alice/notes", ALL, "ephemeral note about lunch", ttl_s=60)
    keep = mem.put("alice/notes", ALL, "permanent note about lunch")
    assert len(mem.search({"alice/notes": RO}, "note about lunch")) == 2
    clock.t += 61
    hits = mem.search({"alice/notes": RO}, "note about lunch")
    assert [h.record.id for h in hits] == [keep.id]
    with pytest.raises(NoSuchObject):
        mem.get("alice/notes", RO, short.id)
    rep = mem.compact()
    assert rep.expired == 1
    assert mem.usage("alice/notes").items == 1


def test_namespace_retention_max_items_evicts_oldest(mem: MemoryCore, clock: FakeClock) -> None:
    mem.set_retention("alice/notes", ALL, Tier.RECALL, Retention(max_items=3))
    for i in range(5):
        clock.t += 1
        mem.recall_append("alice/notes", ALL, "user", f"message number {i}")
    texts = [r.text for r in mem.records("alice/notes", RO, Tier.RECALL)]
    assert texts == ["message number 2", "message number 3", "message number 4"]
    assert mem.recall_search("alice/notes", RO, "number", k=10)[0].text.startswith("message")
    mem.set_retention("alice/notes", ALL, Tier.ARCHIVAL, Retention(ttl_s=10))
    mem.put("alice/notes", ALL, "short lived by namespace rule")
    clock.t += 11
    assert mem.compact().expired == 1
    with pytest.raises(InvalidArgument):
        mem.set_retention("alice/notes", ALL, Tier.CORE, Retention(ttl_s=1))
    with pytest.raises(PermissionDenied):
        mem.set_retention("alice/notes", RO, Tier.RECALL, Retention(max_items=1))


def test_quotas_refuse_and_change_nothing(clock: FakeClock) -> None:
    m = MemoryCore(None, HashingEmbedder(dim=16), clock=clock)
    m.create_namespace("a", "q", quota_items=2, quota_bytes=10_000)
    m.put("q", ALL, "one")
    m.core_set("q", ALL, "persona", "two")
    with pytest.raises(QuotaExceeded, match="item quota"):
        m.put("q", ALL, "three")
    assert m.usage("q").items == 2
    m.set_quota("q", items=100, bytes_=200)
    with pytest.raises(QuotaExceeded, match="byte quota"):
        m.put("q", ALL, "x" * 150)
    assert m.usage("q").items == 2 and len(m.search({"q": RO}, "x", k=10)) == 1


def test_bad_input_is_refused(mem: MemoryCore) -> None:
    with pytest.raises(AlreadyExists):
        mem.create_namespace("bob", "alice/notes")
    with pytest.raises(InvalidArgument):
        mem.create_namespace("bob", "../etc")
    with pytest.raises(InvalidArgument):
        mem.put("alice/notes", ALL, "")
    with pytest.raises(InvalidArgument):
        mem.put("alice/notes", ALL, "x", meta={"bad": object()})
    with pytest.raises(InvalidArgument):
        mem.put("alice/notes", ALL, "x", tier=Tier.CORE)
    with pytest.raises(InvalidArgument):
        mem.search({"alice/notes": RO}, "x", k=0)
    with pytest.raises(NoSuchObject):
        mem.put("nope", ALL, "x")
    assert mem.usage("alice/notes").items == 0


def test_delete_and_drop(mem: MemoryCore) -> None:
    r = mem.put("alice/notes", ALL, "to be removed")
    m = mem.recall_append("alice/notes", ALL, "user", "removable message")
    mem.delete("alice/notes", RW, r.id)
    mem.delete("alice/notes", RW, m.id)
    assert mem.search({"alice/notes": RO}, "removed") == []
    assert mem.recall_search("alice/notes", RO, "removable") == []
    with pytest.raises(NoSuchObject):
        mem.delete("alice/notes", RW, r.id)
    with pytest.raises(PermissionDenied):
        mem.drop_namespace("alice/notes", RW)
    mem.drop_namespace("alice/notes", ALL)
    assert mem.namespaces() == []


def test_persistence_and_self_healing(tmp_path: Path, clock: FakeClock) -> None:
    m = MemoryCore(tmp_path, HashingEmbedder(), clock=clock)
    m.create_namespace("alice", "alice/notes", retention={Tier.RECALL: Retention(max_items=10)})
    a = m.put("alice/notes", ALL, "the vault opens at dawn", meta={"k": 1})
    m.core_set("alice/notes", ALL, "persona", "v1")
    m.recall_append("alice/notes", ALL, "user", "hello there")
    m.close()
    m2 = MemoryCore(tmp_path, HashingEmbedder(), clock=clock)
    ns = m2.namespace("alice/notes")
    assert ns.owner == "alice" and ns.retention[Tier.RECALL].max_items == 10
    assert m2.search({"alice/notes": RO}, "vault dawn")[0].record.id == a.id
    assert m2.core_get("alice/notes", RO, "persona").value == "v1"
    assert m2.recall_search("alice/notes", RO, "hello")[0].text == "hello there"
    # a record that reached SQLite but not the vector index (crash between writes)
    b = m2.put("alice/notes", ALL, "written just before a crash")
    m2._archive.get("alice/notes").delete([b.id])
    m2.close()
    m3 = MemoryCore(tmp_path, HashingEmbedder(), clock=clock)
    assert m3.search({"alice/notes": RO}, "written just before a crash")[0].record.id == b.id
    assert any("re-embedded 1" in r for r in m3.recoveries)
    m3.close()
