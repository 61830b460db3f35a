"""The command line as a user runs it: ``doctor``, ``demo`` and the default ``serve``.

Every command runs as a subprocess with an environment built here (never the developer's),
against the emulator on loopback or in sandbox mode.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.demo import DemoOptions, ProgressBar, make_sample_image, run_demo
from server.demo import _Console as Console  # pyright: ignore[reportPrivateUsage]
from server.sandbox import Emulator
from tests.conftest import VX_KEY, WS_KEY
from tests.contract import TOOL_NAMES

CANARY = "sk-canary-do-not-print-7f3a9c"
COMMAND_SECONDS = 60
WAVESPEED_MODELS = (
    "wan22_i2v_480p_ultra_fast",
    "wan22_i2v_480p_lora_ultra_fast",
    "wan22_i2v",
    "wan21_i2v_480p",
)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no keys unless given, files under ``home``."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "WAN_MCP_HOME": str(home / "wan"),
        "WAN_MCP_ALLOWED_DIRS": str(home),
        **extra,
    }


async def wan(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``wan-video-mcp ARGS`` (as ``python -m server``); its exit code and stdout + stderr."""
    with anyio.fail_after(COMMAND_SECONDS):
        done = await anyio.run_process(
            [sys.executable, "-m", "server", *args], input=b"", env=env, check=False
        )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def loopback(base_url: str, ws_key: str = WS_KEY, vx_key: str = VX_KEY) -> dict[str, str]:
    return {
        "WAVESPEED_API_KEY": ws_key,
        "VTRIX_API_KEY": vx_key,
        "WAVESPEED_BASE_URL": base_url,
        "VTRIX_BASE_URL": base_url,
        "WAN_MCP_POLL_INTERVAL": "0.02",
    }


@pytest.mark.anyio
async def test_doctor_without_keys_names_each_models_variable_and_fails(tmp_path: Path) -> None:
    code, out = await wan("doctor", env=base_env(tmp_path, WAVESPEED_API_KEY="", WAN_MCP_TOKEN=CANARY))
    assert code == 1, out
    for slug in WAVESPEED_MODELS:
        assert f"{slug}" in out
    assert "set WAVESPEED_API_KEY to use " + ", ".join(WAVESPEED_MODELS) in out
    assert "set VTRIX_API_KEY to use wan22_i2v_flash" in out
    assert "NOT READY" in out
    assert "--sandbox" in out
    assert CANARY not in out
    assert str(tmp_path / "wan" / "jobs.sqlite3") in out


@pytest.mark.anyio
async def test_doctor_against_the_emulator_says_both_keys_are_accepted(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    code, out = await wan("doctor", env=base_env(tmp_path, **loopback(loopback_emulator)))
    assert code == 0, out
    assert "key accepted; balance $100.00" in out
    assert out.count("accepted") >= 2
    assert "OK: all 5 enabled models are usable." in out
    assert WS_KEY not in out
    assert VX_KEY not in out
    assert "/api/v3/balance" in [call.path for call in emulator.calls]
    assert not emulator.submissions()


@pytest.mark.anyio
async def test_doctor_reports_a_refused_key_without_printing_it(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    env = base_env(tmp_path, **loopback(loopback_emulator, ws_key=CANARY), WAN_MCP_MODELS="wan22_i2v")
    code, out = await wan("doctor", env=env)
    assert code == 1, out
    assert "WaveSpeed refused WAVESPEED_API_KEY" in out
    assert CANARY not in out


@pytest.mark.anyio
async def test_doctor_in_sandbox_needs_no_key(tmp_path: Path) -> None:
    code, out = await wan("doctor", "--sandbox", env=base_env(tmp_path))
    assert code == 0, out
    assert "SANDBOX" in out
    assert "OK: all 5 enabled models are usable." in out


@pytest.mark.anyio
async def test_demo_in_the_sandbox_runs_end_to_end(tmp_path: Path) -> None:
    with anyio.fail_after(COMMAND_SECONDS):
        code, out = await wan("demo", "--home", str(tmp_path / "demo-home"), env=base_env(tmp_path))
    assert code == 0, out
    assert "SANDBOX" in out
    assert "Price: $0.05" in out
    assert "100%" in out
    assert "[sandbox: emulated provider, no cost]" in out
    urls = [line.split()[2] for line in out.splitlines() if line.startswith("Video URL:")]
    assert len(urls) == 1
    assert urls[0].startswith("http://127.0.0.1:")
    assert urls[0].endswith(".mp4")
    saved = dict(line.split(maxsplit=1) for line in out.splitlines() if line.startswith(("MP4:", "Poster:")))
    assert saved["MP4:"].endswith(".mp4")
    assert await anyio.Path(saved["MP4:"]).is_file()
    assert await anyio.Path(saved["Poster:"]).is_file()
    assert saved["MP4:"].startswith(str(tmp_path / "demo-home" / "videos"))
    assert (tmp_path / "demo-home" / "demo" / "sample-sunset.png").is_file()
    assert (tmp_path / "demo-home" / "demo" / "server.log").is_file()


@pytest.mark.anyio
async def test_demo_for_real_refuses_to_spend_without_a_terminal_or_yes(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    env = base_env(tmp_path, **loopback(loopback_emulator))
    code, out = await wan("demo", "--prompt", "waves roll in", env=env)
    assert code == 1, out
    assert "Price: $0.05" in out
    assert "--yes" in out
    assert "standard input is not a terminal" in out
    assert not emulator.submissions()


@pytest.mark.anyio
async def test_demo_for_real_with_yes_submits_once_to_the_provider(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    image = make_sample_image(tmp_path / "mine" / "frame.png", size=(640, 400))
    env = base_env(tmp_path, **loopback(loopback_emulator))
    args = ("demo", "--model", "wan22_i2v_flash", "--image", str(image), "--prompt", "waves roll in", "--yes")
    code, out = await wan(*args, env=env)
    assert code == 0, out
    assert "REAL job on vtrix" in out
    assert "MP4:" in out
    assert "[sandbox" not in out
    assert len(emulator.submissions("vtrix")) == 1
    assert not emulator.submissions("wavespeed")
    assert VX_KEY not in out


def test_demo_names_the_missing_key_before_starting_anything(tmp_path: Path) -> None:
    out = io.StringIO()
    options = DemoOptions(model="wan22_i2v_flash", prompt="a cat")
    code = run_demo(options, out=out, environ=base_env(tmp_path, WAVESPEED_API_KEY=CANARY))
    assert code == 2
    assert "VTRIX_API_KEY" in out.getvalue()
    assert "--sandbox" in out.getvalue()
    assert not (tmp_path / "wan").exists()


def test_demo_refuses_an_unknown_model(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_demo(DemoOptions(model="wan99", sandbox=True), out=out, environ=base_env(tmp_path))
    assert code == 2
    assert "unknown model 'wan99'" in out.getvalue()
    assert "wan22_i2v_flash" in out.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.anyio
async def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    screen = _Terminal()
    bar = ProgressBar(Console(screen))
    await bar(5, 100, "queued")
    await bar(5, 100, "queued")
    await bar(100, 100, "done")
    bar.finish()
    text = screen.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.rstrip().endswith("100%  done")
    assert "[" + "#" * 30 + "] 100%" in text


@pytest.mark.anyio
async def test_no_sub_command_still_serves_mcp_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "--sandbox", "--log-level", "WARNING"],
        env=base_env(tmp_path),
    )
    with anyio.fail_after(COMMAND_SECONDS):
        async with Client(params) as client:
            assert sorted(t.name for t in (await client.list_tools()).tools) == TOOL_NAMES


@pytest.mark.anyio
async def test_serve_over_http_refuses_a_reachable_address_without_a_token(tmp_path: Path) -> None:
    code, out = await wan(
        "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "9", env=base_env(tmp_path)
    )
    assert code == 2, out
    assert "WAN_MCP_HTTP_TOKEN" in out


@pytest.mark.anyio
async def test_jobs_prints_the_ledger_the_tool_reports(tmp_path: Path, loopback_emulator: str) -> None:
    from mcp import Client

    from tests.mcp_helpers import minimal_arguments, stdio_server, structured

    home = tmp_path / "wan"
    params = stdio_server(home, loopback_emulator)
    async with Client(params) as client:
        await client.call_tool("wan22_i2v_480p_ultra_fast_generate_video", minimal_arguments("u"))
        await client.call_tool(
            "wan22_i2v_flash_generate_video", {**minimal_arguments("f"), "resolution": "480P"}
        )
        ledger = structured(await client.call_tool("list_jobs", {}))
    code, out = await wan("jobs", env=base_env(tmp_path, WAN_MCP_HOME=str(home)))
    assert code == 0, out
    assert ledger["summary"]["total"]["jobs"] == 2
    assert f"{'total':<32} {2:>5}" in out
    assert "$0.12" in out  # 0.05 estimated + 0.07 for flash
    assert "model wan22_i2v_flash" in out
    code, out = await wan(
        "jobs", "--model", "wan22_i2v_flash", env=base_env(tmp_path, WAN_MCP_HOME=str(home))
    )
    assert code == 0
    assert "wan22_i2v_480p_ultra_fast-" not in out
    code, out = await wan("jobs", "--since", "yesterday-ish", env=base_env(tmp_path, WAN_MCP_HOME=str(home)))
    assert code == 2
    assert "'since' must be" in out
