"""The distribution ``conduit-load`` builds as a wheel that installs and runs ``conduit``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_distribution_name_and_version() -> None:
    import conduit

    assert PYPROJECT["project"]["name"] == "conduit-load"
    assert PYPROJECT["project"]["dynamic"] == ["version"] and PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "conduit._version.__version__"}
    assert conduit.__version__ == version("conduit-load")  # what the build read from conduit/_version.py


def test_extras_refer_to_the_distribution_itself() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    selfrefs = [req for reqs in extras.values() for req in reqs if req.split("[")[0] in ("conduit", "conduit-load")]
    assert selfrefs and all(req.startswith("conduit-load[") for req in selfrefs)


@pytest.mark.parametrize("package", ["polars", "duckdb", "pyarrow", "pydantic", "click", "rich", "pyyaml", "numpy"])
def test_runtime_dependencies_have_an_upper_bound_above_the_installed_version(package: str) -> None:
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    spec = reqs[package].specifier
    assert any(s.operator == "<" for s in spec), f"{package} has no upper bound: {spec}"
    assert version(package) in spec, f"installed {package} {version(package)} is outside {spec}"


CALENDAR_VERSIONED = {"fsspec", "s3fs", "gcsfs", "adlfs"}  # no major to pin


def test_every_dependency_has_an_upper_bound_on_its_major() -> None:
    from packaging.requirements import Requirement

    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]]
    unbounded = [str(r) for r in reqs if r.name not in CALENDAR_VERSIONED | {"conduit-load"} and not any(s.operator in ("<", "==", "~=") for s in r.specifier)]
    assert not unbounded


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)], check=True, capture_output=True)
    (wheel,) = out.glob("conduit_load-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "conduit/cli.py" in names and "conduit/connectors/base.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "conduit = conduit.cli:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()

    venv = tmp_path / "venv"
    # the source tree must not be on the fresh venv's path: a PYTHONPATH to it (and the
    # conduit_load.egg-info the build leaves there) would make pip skip the wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies come from this (dev) environment, after the fresh venv's own site-packages
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", "--force-reinstall", str(wheel)], check=True, capture_output=True, env=env)

    # from the temporary folder: the source tree must not be on the path
    help_out = subprocess.run([venv / "bin" / "conduit", "--help"], check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert "Usage: conduit" in help_out and "run" in help_out
    code = "import conduit, importlib.metadata as m; print(conduit.__file__); print(conduit.__version__, m.version('conduit-load'))"
    where, versions = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout.splitlines()
    assert Path(where).is_relative_to(site), where  # the wheel's copy, not the source tree
    import conduit

    assert versions.split() == [conduit.__version__] * 2
