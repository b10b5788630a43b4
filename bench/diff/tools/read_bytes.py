"""The I/O reference: read every byte of both snapshots (1 MiB reads) and count the lines.

No parsing: the cost of getting the input from the (warm) page cache into the process.
"""

from __future__ import annotations

from bench.diff.tools.common import Phases, emit, parse_args, snapshot_files


def main() -> None:
    a = parse_args(__doc__)
    ph = Phases()
    lines = size = 0
    with ph("read"):
        for folder in (a.before, a.after):
            for path in snapshot_files(folder):
                with open(path, "rb", buffering=0) as f:
                    while chunk := f.read(1 << 20):
                        size += len(chunk)
                        lines += chunk.count(b"\n")
    emit(None, ph, bytes_read=size, lines=lines)


if __name__ == "__main__":
    main()
