"""Row estimates of text files for progress: bytes over the average line length of a sample.

Examples
--------
>>> import fsspec, pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
>>> _ = p.write_text("id,name\\n" + "".join(f"{i},x\\n" for i in range(1000)))
>>> text_rows(fsspec.filesystem("file"), [(str(p), p.stat().st_size)], header=True)
1000
"""

from __future__ import annotations

from typing import Any

SAMPLE_BYTES = 1 << 20
"""Bytes read from the first file to measure the average line."""
COMPRESSED = (".gz", ".gzip", ".bz2", ".zst", ".zstd", ".xz", ".lz4")


def text_rows(fs: Any, files: list[tuple[str, int]], header: bool, sample_bytes: int = SAMPLE_BYTES) -> int | None:
    """Records in line-per-record files (CSV, NDJSON): exact when the first file fits the sample, else total bytes / average line length.

    The average is measured on the first file, in three windows (start, middle, end) of
    a third of ``sample_bytes`` each, so lines that grow along the file (ids, timestamps)
    do not skew it. Compressed files, and a sample without a line end, give None
    (unknown). Quoted newlines inside CSV values make it an estimate; progress treats it
    as one.
    """
    if not files or any(url.lower().endswith(COMPRESSED) for url, _ in files):
        return None
    url, size = files[0]
    with fs.open(url, "rb") as fh:
        if size <= sample_bytes:
            sample = fh.read(size)
            lines = sample.count(b"\n") + (1 if sample and not sample.endswith(b"\n") else 0)
            if len(files) == 1:
                return max(0, lines - header)
            measured = len(sample)
        else:
            window = sample_bytes // 3
            lines = measured = 0
            for offset in (0, (size - window) // 2, size - window):
                fh.seek(offset)
                block = fh.read(window)
                lines += block.count(b"\n")
                measured += len(block)
    if lines == 0:
        return None
    total = round(sum(s for _, s in files) * lines / measured)
    return max(0, total - (len(files) if header else 0))
