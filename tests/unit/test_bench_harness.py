"""The benchmark harness's peak RSS is the command's own, not its parent's.

On Linux a child's ``ru_maxrss`` starts from the RSS of the process it was forked from
(the kernel carries the forking process's high-water mark across ``exec``), so a
harness holding a few hundred MiB would report at least that much for ``psql``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.harness import measure

MIB = 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_rss_is_the_commands_own(tmp_path: Path) -> None:
    ballast = bytearray(400 * MIB)  # the harness process grows
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    small = measure([sys.executable, "-c", "pass"], tmp_path, tmp_path / "small.log")
    big = measure([sys.executable, "-c", "import time; x = bytearray(200 << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(0.3)"], tmp_path, tmp_path / "big.log")
    del ballast
    assert small.returncode == 0 and big.returncode == 0
    assert small.peak_rss < 100 * MIB
    assert 200 * MIB <= big.peak_rss < 300 * MIB
