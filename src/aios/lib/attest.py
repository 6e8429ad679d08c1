"""Measured boot into software PCRs, quotes and their verification.

Design
------
A TPM's platform configuration registers (PCRs) can only be *extended*:
``PCR_new = SHA-256(PCR_old || digest)``.  The final value commits to the
whole ordered sequence of measurements, so a verifier who replays an event
log of ``(pcr, digest, description)`` entries from all-zero registers and
gets the quoted values knows the log is the true boot history, and can then
judge each entry (is this the kernel code we expect? these policies?).

Here the registers live in the kernel process (:class:`PcrBank`, pure).
Boot measures, in order: kernel code (PCR 0), configuration (1), policies
(2), service images (3), agent images (4); a later step cannot undo an
earlier one.  ``quote(nonce)`` signs the nonce and the selected PCR values
with the node's ML-DSA-65 key (context ``aios/quote/v1``).  A verifier
chooses a fresh nonce, gets a quote, and :func:`verify_quote` checks the
nonce (a stale one fails), the signature, then replays the event log and
compares.

What this is and is not: software PCRs are as trustworthy as the kernel
process and the node key; a root user on the host can forge them.  A
hardware TPM (``/dev/tpmrm0``) would hold the registers and the signing key
outside the OS; :func:`tpm_device` detects one and reports it as the adapter
point.  None is present on the development hosts, so quotes here are
software quotes and say so (``"tpm": false``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.crypto import pqc

NUM_PCRS: Final = 24
DIGEST_LEN: Final = 32
ZERO: Final = bytes(DIGEST_LEN)
QUOTE_CONTEXT: Final = b"aios/quote/v1"
MAX_NONCE: Final = 64
ALG: Final = "mldsa65"

PCR_KERNEL: Final = 0
PCR_CONFIG: Final = 1
PCR_POLICY: Final = 2
PCR_SERVICES: Final = 3
PCR_AGENTS: Final = 4

TPM_PATHS: Final = ("/dev/tpmrm0", "/dev/tpm0")


def extend(pcr: bytes, digest: bytes) -> bytes:
    """``SHA-256(pcr || digest)``."""
    return hashlib.sha256(pcr + digest).digest()


def measure(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def measure_files(paths: Iterable[Path], root: Path | None = None) -> bytes:
    """One digest over files in sorted order, each as ``name NUL sha256``."""
    h = hashlib.sha256()
    for p in sorted(paths):
        name = str(p.relative_to(root)) if root is not None else str(p)
        h.update(name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.digest()


@dataclass(frozen=True, slots=True)
class LogEvent:
    pcr: int
    digest: bytes
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"pcr": self.pcr, "digest": self.digest.hex(), "description": self.description}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LogEvent:
        try:
            ev = cls(int(obj["pcr"]), bytes.fromhex(obj["digest"]), str(obj["description"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(f"bad event log entry: {exc}") from None
        _check_event(ev.pcr, ev.digest)
        return ev


def _check_event(pcr: int, digest: bytes) -> None:
    if not 0 <= pcr < NUM_PCRS:
        raise InvalidArgument(f"PCR index {pcr} is outside 0..{NUM_PCRS - 1}")
    if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
        raise InvalidArgument("a measurement is a 32-byte SHA-256 digest")


@dataclass(slots=True)
class PcrBank:
    """Software PCRs and their event log."""

    values: list[bytes] = field(default_factory=lambda: [ZERO] * NUM_PCRS)
    log: list[LogEvent] = field(default_factory=list)

    def extend(self, pcr: int, digest: bytes, description: str) -> bytes:
        _check_event(pcr, digest)
        self.values[pcr] = extend(self.values[pcr], digest)
        self.log.append(LogEvent(pcr, digest, description))
        return self.values[pcr]

    def measure(self, pcr: int, data: bytes, description: str) -> bytes:
        return self.extend(pcr, measure(data), description)

    @classmethod
    def replay(cls, events: Iterable[LogEvent]) -> PcrBank:
        bank = cls()
        for ev in events:
            bank.extend(ev.pcr, ev.digest, ev.description)
        return bank

    def save_log(self, path: Path) -> None:
        from aios.lib.paths import private_dir, private_file

        private_dir(path.parent)
        tmp = private_file(path.with_name(path.name + ".tmp"))
        tmp.write_text(json.dumps([e.to_json() for e in self.log], indent=1))
        tmp.replace(path)


def load_event_log(path: Path) -> list[LogEvent]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"no event log at {path} (has the kernel booted?)") from None
    except ValueError as exc:
        raise IntegrityError(f"event log is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise IntegrityError("event log must be a list")
    return [LogEvent.from_json(e) for e in raw]


class QuoteSigner(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes, context: bytes = b"") -> bytes: ...


@dataclass(frozen=True, slots=True)
class Quote:
    nonce: bytes
    pcrs: tuple[tuple[int, bytes], ...]
    signature: bytes
    tpm: bool = False

    def body(self) -> bytes:
        return quote_body(self.nonce, self.pcrs, self.tpm)

    def to_json(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce.hex(),
            "pcrs": {str(i): v.hex() for i, v in self.pcrs},
            "signature": self.signature.hex(),
            "tpm": self.tpm,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Quote:
        try:
            pcrs = tuple(sorted((int(k), bytes.fromhex(v)) for k, v in obj["pcrs"].items()))
            return cls(
                bytes.fromhex(obj["nonce"]),
                pcrs,
                bytes.fromhex(obj["signature"]),
                bool(obj.get("tpm", False)),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"malformed quote: {exc}") from None


def quote_body(nonce: bytes, pcrs: Sequence[tuple[int, bytes]], tpm: bool) -> bytes:
    lines = ["aios-quote/v1", f"nonce {nonce.hex()}", f"tpm {int(tpm)}"]
    lines += [f"pcr {i} {v.hex()}" for i, v in pcrs]
    return ("\n".join(lines) + "\n").encode()


def quote(
    bank: PcrBank, nonce: bytes, signer: QuoteSigner, selection: Iterable[int] | None = None
) -> Quote:
    """Sign ``nonce`` and the selected PCR values (default: every PCR the log touched)."""
    if not isinstance(nonce, bytes) or not 1 <= len(nonce) <= MAX_NONCE:
        raise InvalidArgument(f"a nonce is 1..{MAX_NONCE} bytes")
    sel = sorted(set(selection)) if selection is not None else sorted({e.pcr for e in bank.log})
    for i in sel:
        if not 0 <= i < NUM_PCRS:
            raise InvalidArgument(f"PCR index {i} is outside 0..{NUM_PCRS - 1}")
    pcrs = tuple((i, bank.values[i]) for i in sel)
    return Quote(nonce, pcrs, signer.sign(quote_body(nonce, pcrs, False), QUOTE_CONTEXT))


def verify_quote(
    q: Quote, event_log: Sequence[LogEvent], node_pubkey: bytes, nonce: bytes
) -> PcrBank:
    """Check a quote against the verifier's ``nonce`` and replay ``event_log``.
    Returns the replayed bank; raises ``IntegrityError`` on any mismatch."""
    if not hmac.compare_digest(q.nonce, nonce):
        raise IntegrityError("quote nonce does not match: stale or replayed quote")
    if not pqc.verify(ALG, node_pubkey, q.body(), q.signature, QUOTE_CONTEXT):
        raise IntegrityError("quote signature does not verify under the node key")
    bank = PcrBank.replay(event_log)
    for i, v in q.pcrs:
        if bank.values[i] != v:
            raise IntegrityError(
                f"PCR {i}: event log replays to {bank.values[i].hex()[:16]}…, quote says {v.hex()[:16]}…"
            )
    return bank


def measure_kernel_code(bank: PcrBank, package_root: Path | None = None) -> bytes:
    """Extend PCR 0 with every Python file of the installed ``aios`` package."""
    root = package_root or Path(__file__).resolve().parents[1]
    files = sorted(root.rglob("*.py"))
    return bank.extend(
        PCR_KERNEL, measure_files(files, root), f"kernel code: {len(files)} files of {root.name}"
    )


def measure_boot(home: Path, steps: Iterable[tuple[int, str, bytes]] = ()) -> PcrBank:
    """The static part of measured boot: kernel code (PCR 0), ``config.toml``
    (PCR 1), ``policies/*.cedar`` (PCR 2), then the caller's ``(pcr,
    description, data)`` steps (services, agent images), in order.  Writes the
    event log under ``home`` and returns the bank the kernel keeps."""
    from aios.lib.paths import event_log_path

    bank = PcrBank()
    measure_kernel_code(bank)
    config = home / "config.toml"
    bank.measure(
        PCR_CONFIG, config.read_bytes() if config.exists() else b"", f"config: {config.name}"
    )
    policies = sorted((home / "policies").glob("*.cedar")) if (home / "policies").is_dir() else []
    bank.extend(PCR_POLICY, measure_files(policies, home), f"policies: {len(policies)} files")
    for pcr, description, data in steps:
        bank.measure(pcr, data, description)
    bank.save_log(event_log_path(home))
    return bank


def tpm_device() -> Path | None:
    """The hardware TPM resource manager, if this host has one."""
    for p in TPM_PATHS:
        if Path(p).exists():
            return Path(p)
    return None


def tpm_status() -> str:
    dev = tpm_device()
    if dev is None:
        return "no hardware TPM (/dev/tpmrm0 absent): using software PCRs signed by the node key"
    return f"hardware TPM at {dev}: adapter point; quotes here still use software PCRs and the node key"
