"""The co-install hazard, for real: this project's wheel installed by pip into a fresh virtual
environment, then a second distribution that also ships a top-level ``tools`` package installed on
top of it (as PyPI ``mcp-wan`` does). doctor's check must see the overwrite, name the culprit and
say how to fix it; on an intact install (and in this test run's own environment) it must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.doctor import diagnose, render
from server.install_check import check_install
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RIVAL = "mcp-wan-lookalike"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """This project's wheel and a rival's that ships its own tools/__init__.py (both built offline)."""
    out = tmp_path_factory.mktemp("wheels")
    rival = tmp_path_factory.mktemp("rival")
    (rival / "tools").mkdir()
    (rival / "tools" / "__init__.py").write_text('"""Somebody else\'s tools."""\n')
    (rival / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        f'[project]\nname = "{RIVAL}"\nversion = "1.0"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["tools"]\n'
    )
    for source in (ROOT, rival):
        run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(source)])
    found = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    return {"ours": found["wan_video_mcp"], "rival": found["mcp_wan_lookalike"]}


def new_venv(where: Path) -> tuple[Path, str]:
    run([sys.executable, "-m", "venv", "--without-pip", str(where)])
    python = where / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    return python, site


def install(python: Path, wheel: Path) -> None:
    run([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])


def test_an_isolated_install_is_its_own(tmp_path: Path, wheels: dict[str, Path]) -> None:
    python, site = new_venv(tmp_path / "venv")
    install(python, wheels["ours"])
    check = check_install([site])
    assert check.ok, check.problems
    assert check.mode == "installed"
    assert check.version == "0.1.0"
    for origin in check.origins:
        assert origin.path == Path(site).resolve() / origin.name / "__init__.py"


def test_a_second_distribution_overwriting_tools_is_named_with_the_fix(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    python, site = new_venv(tmp_path / "venv")
    install(python, wheels["ours"])
    install(python, wheels["rival"])
    assert (Path(site) / "tools" / "__init__.py").read_text().startswith('"""Somebody else')
    check = check_install([site])
    assert not check.ok
    (problem,) = check.problems  # server is intact; only tools is reported
    assert "The package 'tools' has files changed or removed since install (tools/__init__.py)" in problem
    assert f"{RIVAL} also ships a top-level 'tools' package." in problem
    assert "uvx wan-video-mcp, pipx install wan-video-mcp, or the Claude Desktop bundle" in problem
    assert f"pip uninstall {RIVAL}, then pip install --force-reinstall wan-video-mcp" in problem


@pytest.mark.anyio
async def test_doctor_reports_a_broken_install_as_not_ready(tmp_path: Path, wheels: dict[str, Path]) -> None:
    python, site = new_venv(tmp_path / "venv")
    install(python, wheels["ours"])
    install(python, wheels["rival"])
    settings = Settings(home=tmp_path / "home", sandbox=True)
    diagnosis = await diagnose(settings, {}, check_keys=False, install=check_install([site]))
    text = render(diagnosis)
    assert "Install: wan-video-mcp 0.1.0, installed; BROKEN" in text
    assert "NOT READY: this environment's copy is broken. To fix it:" in text
    assert f"pip uninstall {RIVAL}" in text


def test_this_test_runs_own_environment_is_intact() -> None:
    check = check_install()
    assert check.ok, check.problems
    assert {o.name: o.path for o in check.origins} == {
        "server": ROOT / "server" / "__init__.py",
        "tools": ROOT / "tools" / "__init__.py",
    }
