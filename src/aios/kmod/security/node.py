"""The node's security state wired together: what the kernel opens at boot.

Design
------
Boot (whitepaper 4.1 steps 3-5) needs, in order: the keystore and node key
(``identityd``), measured boot into software PCRs, and the audit log with its
event-bus recorder.  :func:`open_node_security` does exactly that and returns
one :class:`NodeSecurity` holding the pieces; the kernel then

* subscribes ``sec.recorder.on_event`` to its event bus,
* calls ``sec.recorder.flush()`` from a timer (in a worker thread: a commit
  waits for ``fsync``) and at shutdown (``sec.close()``),
* calls ``sec.measure_agent(agent_id, image)`` and
  ``sec.keystore.issue_agent_identity(agent_id, image_hash)`` at spawn,
* calls ``sec.rotate_node_key()`` when an operator asks.

Rotation first signs a checkpoint of everything logged so far with the old
key, then makes the new key sign that checkpoint in the rotation statement,
switches the log's signer, and audits the rotation itself.

**A damaged log stops the boot.**  Before appending to an existing log,
:func:`open_node_security` runs the fast boot check
(:func:`~aios.lib.audit.log.check_tail`: the latest checkpoint and the
entries after it).  If it fails the kernel does not start: the error names the
file and the way out (``aios audit verify --full`` to find the first bad
entry, restoring a backup, or ``--accept-broken-log``).  With
``accept_broken_log`` the damaged file is moved aside (``audit.db.broken-<time>``,
kept for forensics), a new log is started, and its first entry after the boot
record says so (``audit.broken_log_accepted``: which file, why, where it went).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aios.lib import attest
from aios.lib.audit.checkpoint import CheckpointPolicy
from aios.lib.audit.log import AuditLog
from aios.lib.audit.recorder import AuditRecord, AuditRecorder
from aios.lib.identity import Keystore, NodeIdentity, RotationStatement, image_hash
from aios.lib.paths import audit_db_path, audit_origin, event_log_path


@dataclass(slots=True)
class NodeSecurity:
    keystore: Keystore
    node: NodeIdentity
    log: AuditLog
    recorder: AuditRecorder
    pcrs: attest.PcrBank
    home: Path

    @property
    def notice(self) -> str:
        """What the keystore chose at first boot (or that it opened)."""
        return self.keystore.notice

    def measure_agent(self, agent_id: int, image: bytes) -> bytes:
        """Extend PCR 4 with an agent image and persist the event log."""
        digest = image_hash(image)
        self.pcrs.extend(attest.PCR_AGENTS, digest, f"agent {agent_id} image")
        self.pcrs.save_log(event_log_path(self.home))
        return digest

    def quote(self, nonce: bytes) -> attest.Quote:
        return attest.quote(self.pcrs, nonce, self.node)

    def rotate_node_key(self) -> RotationStatement:
        last = self.log.checkpoint()
        rot = self.keystore.rotate_node_key(last)
        self.node = self.keystore.node_identity()
        self.log.signer = self.node
        self.recorder.record(
            AuditRecord(
                time.time_ns(),
                "security.node_key.rotated",
                detail={"old_key": rot.old_public_key[:8], "new_key": rot.new_public_key[:8]},
            )
        )
        self.log.checkpoint()
        return rot

    def close(self) -> None:
        """Clean shutdown: commit and sign a final checkpoint."""
        self.log.checkpoint()
        self.recorder.close()


def open_node_security(
    home: Path,
    passphrase: bytes | None = None,
    boot_steps: Iterable[tuple[int, str, bytes]] = (),
    policy: CheckpointPolicy | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    accept_broken_log: bool = False,
) -> NodeSecurity:
    """Open (or, on first boot, create) keys, PCRs and the audit log under ``home``."""
    ks = Keystore(home, passphrase)
    node = ks.node_identity()
    path = audit_db_path(home)
    broken = check_audit_log(home, path, accept_broken_log)
    pcrs = attest.measure_boot(home, boot_steps)
    log = AuditLog(path, audit_origin(ks.node_id), node, policy, clock=clock)
    recorder = AuditRecorder(log)
    recorder.record(
        AuditRecord(
            time.time_ns(),
            "security.boot",
            detail={
                "pcrs": {str(e.pcr): pcrs.values[e.pcr].hex() for e in pcrs.log},
                "keystore": ks.notice,
                "tpm": attest.tpm_status(),
            },
        )
    )
    if broken is not None:
        recorder.record(AuditRecord(time.time_ns(), "audit.broken_log_accepted", detail=broken))
    return NodeSecurity(ks, node, log, recorder, pcrs, home)


def check_audit_log(home: Path, path: Path, accept_broken_log: bool = False) -> dict[str, str] | None:
    """The boot check of an existing audit log (see the module docstring).

    Returns None when the log is sound (or new); with ``accept_broken_log``, moves a
    damaged log aside and returns what the new log's first record says about it;
    otherwise raises (IntegrityError for a damaged tree, StorageError for a file
    that is not a readable database), naming the file and the recovery."""
    from aios.abi.errors import AIOSError, IntegrityError
    from aios.lib.audit.log import RECOVERY, LogReader
    from aios.lib.identity import read_node_public

    if not path.exists():
        return None
    try:
        reader = LogReader.open(path)
        try:
            report = reader.check_tail(read_node_public(home)[1])
        finally:
            reader.conn.close()
        if report.ok:
            return None
        err: AIOSError = IntegrityError(
            f"the audit log at {path} failed its boot check at entry {report.first_bad_entry}: "
            f"{report.reason}; {RECOVERY}", path=str(path), hint=RECOVERY)
    except AIOSError as e:
        err = e
    if not accept_broken_log:
        raise err
    aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return {"file": str(path), "moved_to": str(aside), "reason": err.message}
