"""A real kernel daemon, SIGKILLed under load, comes back with everything it acknowledged.

Each round starts ``aios up`` (a real process on a real home), checks the state the previous
rounds acknowledged against the replayed journal and the live agent table, then runs a mixed
workload on one console connection (spawns of ``restart="always"`` agents, grants of badged
topic capabilities, revokes of some of them, durable sends) from a thread while the main thread
SIGKILLs the daemon after a random delay.  Only answers the client received count as
acknowledged; the operation in flight at the kill may or may not have happened.

After every restart: the journal verifies; every acknowledged agent is alive with its id and
name; every acknowledged grant not revoked is held by its agent with its badge, in its slot;
no capability whose revoke was acknowledged is anywhere; every acknowledged durable message is
in its receiver's mailbox.  ``make test`` runs 3 rounds; ``make test-slow`` 100.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import AIOSError
from aios.abi.sysno import Sys
from aios.kmod.journal import records as R
from aios.kmod.journal.store import Journal
from aios.sandbox.channel import TrapClient

KEEPER = "aios.demos.journaled:keeper"
EVENTS = 4  # the console's events-topic slot (READ, WRITE, GRANT, ADMIN)


@dataclass
class Ledger:
    """What the daemon acknowledged, over every round."""

    agents: dict[int, str] = field(default_factory=dict)  # aid -> name
    grants: dict[int, tuple[int, int]] = field(default_factory=dict)  # badge -> (holder, slot)
    revoked: set[int] = field(default_factory=set)  # badges whose revoke was acknowledged
    maybe: set[int] = field(default_factory=set)  # a revoke in flight at the kill: either way
    durable: dict[int, list[bytes]] = field(default_factory=dict)  # aid -> payloads
    ops: int = 0


class Daemon:
    def __init__(self, home: Path) -> None:
        self.home = home
        env = {**os.environ, "AIOS_HOME": str(home)}
        self.log = open(home.parent / "daemon.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "aios.cli.main", "up"], env=env,
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}); see {self.log.name}")
            try:
                self.client().sock.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the daemon did not start listening") from None
                time.sleep(0.05)

    def client(self) -> TrapClient:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(self.home / "kernel.sock"))
        except OSError:
            s.close()
            raise
        return TrapClient(s)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)
        self.log.close()


def call(c: TrapClient, name: str, *args: Any) -> Any:
    return c.call(int(Sys[name]), args)


def workload(c: TrapClient, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    """Random operations until the connection dies; the ledger gets only what was answered."""
    eps: dict[int, int] = {}
    minted: dict[int, int] = {}  # badge -> the console's slot of the minted parent
    try:
        for aid in ledger.agents:
            eps[aid] = call(c, "AGENT_CONTROL", 2, aid)[1]
        while not stop.is_set():
            op = rng.choice(["spawn", "grant", "grant", "revoke", "send", "send", "send"])
            if op == "spawn" or not eps:
                name = f"keeper-{rng.randrange(1 << 30)}"
                h = call(c, "AGENT_SPAWN", 2, KEEPER, {"name": name, "restart": "always"})
                aid, _ctl, ep = call(c, "GET_ASYNC_RESULT", h, 60.0)
                ledger.agents[aid] = name
                eps[aid] = ep
            elif op == "grant":
                aid = rng.choice(sorted(eps))
                badge = rng.randrange(1, 1 << 40)
                slot = call(c, "CAP_MINT", EVENTS, ["READ", "GRANT"], badge)
                minted[badge] = slot
                there = call(c, "CAP_GRANT", slot, eps[aid], ["READ"])
                ledger.grants[badge] = (aid, there)
            elif op == "revoke":
                if not minted:
                    continue
                badge = rng.choice(sorted(minted))
                ledger.maybe.add(badge)
                call(c, "CAP_REVOKE", minted.pop(badge))
                ledger.maybe.discard(badge)
                ledger.revoked.add(badge)
            else:
                aid = rng.choice(sorted(eps))
                payload = b"m%d" % rng.randrange(1 << 60)
                call(c, "IPC_SEND_DURABLE", eps[aid], payload)
                ledger.durable.setdefault(aid, []).append(payload)
            ledger.ops += 1
    except (AIOSError, OSError):
        return  # the kernel died under us (Cancelled is an AIOSError)
    finally:
        c.sock.close()


def verify(home: Path, daemon: Daemon, ledger: Ledger) -> None:
    j = Journal(home / "journal" / "journal.db")
    try:
        image, _ = j.replay()  # verifies: chain, digests, every record applies
    finally:
        j.conn.close()
    c = daemon.client()
    try:
        live = {r["aid"]: r for r in call(c, "AGENT_LIST", 2)}
    finally:
        c.sock.close()
    for aid, name in ledger.agents.items():
        assert aid in image.agents and not image.agents[aid].exited, f"agent {aid} lost"
        assert image.agents[aid].name == name
        assert live[aid]["name"] == name and live[aid]["state"] != "dead"
    held: dict[int, tuple[int, int]] = {}
    for c in image.caps.values():
        if c.badge and image.objects[c.oid].kind == R.OBJ_TOPIC and not c.ghost:
            held.setdefault(c.badge, (c.holder, c.slot))
    for badge in ledger.revoked:
        assert badge not in held, f"a revoked capability (badge {badge}) came back"
    for badge, (aid, slot) in ledger.grants.items():
        if badge in ledger.maybe:  # its revoke may have been committed before the kill
            assert held.get(badge, (aid, slot)) == (aid, slot)
        elif badge not in ledger.revoked:
            assert held.get(badge) == (aid, slot), f"grant {badge} to {aid} slot {slot} lost"
    endpoints = image.endpoints()
    boxes: dict[int, list[bytes]] = {}
    for oid, box in image.mailboxes.items():
        boxes.setdefault(endpoints[oid], []).extend(m.payload for _s, m in sorted(box.items()))
    for aid, payloads in ledger.durable.items():
        there = iter(boxes.get(aid, []))
        assert all(p in there for p in payloads), f"durable messages to {aid} lost or reordered"


def crash_rounds(tmp_path: Path, rounds: int, seed: int) -> Ledger:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    rng = random.Random(seed)
    ledger = Ledger()
    for _ in range(rounds):
        d = Daemon(home)
        try:
            verify(home, d, ledger)
            stop = threading.Event()
            t = threading.Thread(target=workload, args=(d.client(), ledger, rng, stop), daemon=True)
            t.start()
            deadline = time.monotonic() + rng.uniform(0.3, 1.5)
            while time.monotonic() < deadline and t.is_alive():
                time.sleep(0.01)
        finally:
            d.kill()  # SIGKILL, wherever the workload is
        stop.set()
        t.join(60)
        assert not t.is_alive()
    d = Daemon(home)
    try:
        verify(home, d, ledger)
    finally:
        d.kill()
    return ledger


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ledger = crash_rounds(tmp_path, 3, seed=15)
    assert ledger.ops > 0 and ledger.agents  # the rounds did work that could be lost


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_loses_nothing_acknowledged_100_rounds(tmp_path: Path) -> None:
    ledger = crash_rounds(tmp_path, 100, seed=1515)
    assert ledger.ops > 100 and ledger.revoked and ledger.durable
