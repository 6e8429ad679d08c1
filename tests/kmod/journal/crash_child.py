"""The crash test's victim: journals the deterministic workload and prints what is acknowledged.

``python crash_child.py JOURNAL SEED``: replays the journal (printing ``START last_seq``), then
runs the workload for ever, committing every few operations and printing ``ACK seq`` only after
the commit has returned.  The parent SIGKILLs it at a random moment.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from workload import Workload

from aios.kmod.journal.store import Journal


def main() -> None:
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    j = Journal(path, batch_max=64)
    image, report = j.replay()
    print(f"START {report.last_seq}", flush=True)
    w = Workload(image, seed)
    if not image.agents:
        j.append_many(w.bootstrap().records)
    rng = random.Random(seed ^ 0x5EED)
    for _round in range(400):
        for _ in range(rng.randrange(1, 20)):
            op = w.step()
            if op.checkpoint is not None:
                n = j.checkpoint(*op.checkpoint)
                assert [r for r in op.records] == [type(op.records[0])(op.checkpoint[0], n)]
            else:
                j.append_many(op.records)
        print(f"ACK {j.commit()}", flush=True)
    j.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
