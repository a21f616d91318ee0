"""Flashing throughput: a 1 GiB image written to a file-backed storage mux through `serve()`.

Target (issue 5): >= 200 MB/s over a unix socket (upstream ~108 MB/s upload). The floor is a plain
local file copy of the same image on the same disk, measured in the same run.
`python bench/bench_storage.py [--size-mib N]` prints JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    """Measure and print JSON."""
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_opendal.driver import MockStorageMux

    size_mib = int(sys.argv[sys.argv.index("--size-mib") + 1]) if "--size-mib" in sys.argv else 1024
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        image = Path(tmp) / "image.raw"
        block = os.urandom(1 << 20)
        with open(image, "wb") as f:
            for _ in range(size_mib):
                f.write(block)
        size = image.stat().st_size
        start = time.perf_counter()
        shutil.copyfile(image, Path(tmp) / "copy.raw")
        floor = size / (time.perf_counter() - start) / 1e6
        os.unlink(Path(tmp) / "copy.raw")
        rates = []
        with serve(MockStorageMux(path=str(Path(tmp) / "card.img"))) as storage:
            for _ in range(2):
                start = time.perf_counter()
                storage.write_from_path(image, skip_unchanged=False)
                rates.append(size / (time.perf_counter() - start) / 1e6)
    print(json.dumps({"size_mib": size_mib, "flash_MBps": rates, "best_MBps": max(rates),
                      "local_copy_floor_MBps": floor}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
