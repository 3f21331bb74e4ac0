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


def test_cpu_time_is_the_commands_and_its_childrens(tmp_path: Path) -> None:
    """CPU time counts what the command and the processes it waited for burned, and not time spent asleep."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    asleep = measure([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path, tmp_path / "asleep.log")
    child = measure([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}], check=True)"], tmp_path, tmp_path / "child.log")
    assert asleep.returncode == 0 and child.returncode == 0
    assert asleep.wall_s >= 0.5 and asleep.cpu_s < 0.3
    assert child.cpu_s >= 0.4
