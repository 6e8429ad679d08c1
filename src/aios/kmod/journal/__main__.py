"""``python -m aios.kmod.journal verify|salvage PATH``: check or salvage a kernel journal.

Until the journal is wired into the kernel (and ``aios journal`` exists), this is the recovery
command a failed integrity check names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from aios.abi.errors import AIOSError
from aios.kmod.journal.salvage import salvage
from aios.kmod.journal.store import Journal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aios.kmod.journal")
    ap.add_argument("command", choices=["verify", "salvage"])
    ap.add_argument("path", type=Path)
    args = ap.parse_args(argv)
    if not args.path.exists():
        print(f"no journal at {args.path}", file=sys.stderr)
        return 2
    try:
        if args.command == "verify":
            j = Journal(args.path)
            try:
                image, report = j.replay()
            finally:
                j.conn.close()
            print(json.dumps({**dataclasses.asdict(report), **image.summary()}, indent=1))
        else:
            print(json.dumps(dataclasses.asdict(salvage(args.path)), indent=1))
    except AIOSError as e:
        print(e.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
