"""The player in a real browser: Debian's Chromium driven by Playwright, the player in a sandboxed
srcdoc iframe under the spec's default CSP, a mock host page speaking the postMessage dialect and
forwarding to the real server, which talks to the provider emulator over HTTP."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image, ImageDraw

from server.app import build_server
from server.media.video import inspect_video
from server.sandbox import Emulator
from server.settings import PollPolicy, SpendPolicy
from tests.conftest import make_settings
from tests.player_host import browser, dumps, mock_host

pytestmark = pytest.mark.anyio

MODEL = "wan22_i2v_480p_ultra_fast"
TOOL = f"{MODEL}_generate_video"
PROMPT = "The sun sets behind the hills, slow push-in"
# Polls a few tenths of a second apart: the player follows the server's pace, so a run is quick.
POLL = PollPolicy(interval=0.3, max_interval=0.3, retry_base=0, retry_cap=0, heartbeat=0.2, reconcile_grace=0)
KNOWN_METHODS = {
    "ui/initialize",
    "ui/notifications/initialized",
    "ui/notifications/size-changed",
    "ui/update-model-context",
    "notifications/message",
    "tools/call",
    "resources/read",
}
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "player.png"


def first_frame() -> str:
    """A small landscape still as a data: URI, which the player shows at once."""
    image = Image.new("RGB", (832, 480))
    draw = ImageDraw.Draw(image)
    for y in range(480):
        t = y / 479
        draw.line([(0, y), (832, y)], fill=(int(250 - 120 * t), int(150 - 60 * t), int(90 + 60 * t)))
    draw.ellipse([520, 170, 660, 310], fill=(255, 214, 120))
    draw.polygon([(0, 480), (0, 330), (260, 250), (520, 340), (832, 280), (832, 480)], fill=(52, 70, 96))
    draw.polygon([(0, 480), (0, 400), (300, 340), (640, 410), (832, 370), (832, 480)], fill=(30, 40, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def arguments(**extra: Any) -> dict[str, Any]:
    return {"image": first_frame(), "prompt": PROMPT, "duration": 5, "seed": 42, "wait_seconds": 0, **extra}


async def test_the_player_follows_a_running_job_plays_it_and_makes_one_new_take(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True  # still running when the host's call returns
    emulator.render_scale = 0.5  # 416x240: a clip worth a screenshot, still quick to render
    server = build_server(make_settings(tmp_path / "home", poll=POLL), transport=emulator.transport())
    with anyio.fail_after(120):
        async with browser() as chromium, mock_host(server, chromium) as host:
            await host.start(TOOL, arguments())
            player = host.player
            await host.wait_for_app_message("m.method === 'ui/notifications/initialized'")

            # At once, from the tool input: the prompt and the first frame.
            await player.locator("#prompt").filter(has_text=PROMPT).wait_for()
            assert (await player.locator("#frame").get_attribute("src") or "").startswith("data:image/png")

            # Running: status and progress, from the player's own get_result calls.
            await host.wait_for_app_message("m.method === 'tools/call' && m.params.name === 'get_result'")
            await player.locator("body[data-status='running']").wait_for(timeout=20_000)
            assert int(await player.locator("#bar").get_attribute("aria-valuenow") or 0) > 0
            assert "running" in (await player.locator("#status").inner_text())
            assert await player.locator("#retake").is_disabled()  # no new take while one runs
            first_job = await player.locator("body").get_attribute("data-job")
            assert first_job is not None
            assert first_job.startswith(MODEL)

            # The job ends; the player notices, loads the MP4 through the host and plays it.
            emulator.release()
            await host.wait_for_app_message(
                f"m.method === 'notifications/message' && m.params.data.event === 'playing'"
                f" && m.params.data.job_id === '{first_job}'",
                timeout_s=30,
            )
            job = server_job(host, first_job)
            facts = inspect_video(Path(job["local_path"]))
            loaded = (await host.player_logs("loadeddata"))[-1]
            assert abs(loaded["duration"] - facts.duration_seconds) < 0.15, loaded
            assert (loaded["width"], loaded["height"]) == (facts.width, facts.height)
            video = await player.locator("#video").evaluate(
                """v => ({src: v.src, ready: v.readyState, muted: v.muted, loop: v.loop,
                          autoplay: v.autoplay, controls: v.controls, poster: v.poster})"""
            )
            assert video["ready"] >= 2
            assert video["muted"]
            assert video["loop"]
            assert video["autoplay"]
            assert video["controls"]
            assert video["poster"].startswith("data:image/jpeg;base64,")
            prefix = "data:video/mp4;base64,"
            assert video["src"].startswith(prefix)
            assert (
                base64.b64decode(video["src"][len(prefix) :])
                == await anyio.Path(job["local_path"]).read_bytes()
            )
            assert host.app_calls("read_video_chunk")
            shown = await player.locator("#facts").inner_text()
            assert f"{facts.duration_seconds:.1f} s" in shown
            assert f"{facts.width}\N{MULTIPLICATION SIGN}{facts.height}" in shown
            assert "42" in shown
            # The host's style variable, not the player's own accent.
            fill = await player.locator("#fill").evaluate("f => getComputedStyle(f).backgroundColor")
            assert fill == "rgb(109, 74, 255)"
            assert "$0.05 estimate" in shown

            shot = tmp_path / "player.png"
            await host.page.locator("#app").screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("WAN_MCP_UPDATE_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)

            # New take: the price is shown and confirmed inside the player, then exactly one submit.
            submits = len(emulator.submissions())
            emulator.hold = False
            retake = player.locator("#retake")
            assert "$0.05" in await retake.inner_text()
            await retake.click()
            assert "$0.05" in await player.locator("#confirm-text").inner_text()
            assert len(emulator.submissions()) == submits  # nothing is spent before the user agrees
            await player.locator("#confirm-yes").click()
            await player.locator(f"body:not([data-job='{first_job}'])").wait_for(timeout=10_000)
            second_job = await player.locator("body").get_attribute("data-job")
            await host.wait_for_app_message(
                f"m.method === 'notifications/message' && m.params.data.event === 'loadeddata'"
                f" && m.params.data.job_id === '{second_job}'",
                timeout_s=30,
            )
            retakes = host.app_calls(TOOL)
            assert len(retakes) == 1, dumps([r.params for r in retakes])
            sent = retakes[0].params["arguments"]
            assert sent["new_take"] is True
            assert sent["seed"] != 42
            assert 0 <= sent["seed"] <= 2147483647
            original = arguments()
            assert {k: sent[k] for k in ("image", "prompt", "duration")} == {
                k: original[k] for k in ("image", "prompt", "duration")
            }
            assert len(emulator.submissions()) == submits + 1
            assert emulator.submissions()[-1].body.get("seed") == sent["seed"]

            # Keep this one: the model is told which take the user kept.
            await player.locator("#keep").click()
            await host.wait_for_app_message("m.method === 'ui/update-model-context'")
            kept = next(m for m in await host.app_messages() if m.get("method") == "ui/update-model-context")
            assert kept["params"]["structuredContent"]["kept_job_id"] == second_job
            assert second_job in kept["params"]["content"][0]["text"]

            # Teardown is answered.
            await host.page.evaluate("() => window.teardown()")
            await host.page.wait_for_function(
                "() => window.appMessages.some((m) => m.id >= 1000 && m.result && !m.method)"
            )

            messages = await host.app_messages()
            check_protocol(messages)
            assert not await host.player_logs("csp-violation")
            assert not [c for c in host.console if "Content Security Policy" in c or "Refused" in c], (
                host.console
            )


async def test_a_new_take_refused_by_the_budget_is_shown_and_sends_nothing(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path / "home", poll=POLL, spend=SpendPolicy(budget_usd=0.05))
    server = build_server(settings, transport=emulator.transport())
    with anyio.fail_after(90):
        async with browser() as chromium, mock_host(server, chromium) as host:
            await host.start(TOOL, arguments(wait_seconds=20), theme="dark")
            player = host.player
            # Completed within the host's call: the player plays it without polling.
            await host.wait_for_app_message(
                "m.method === 'notifications/message' && m.params.data.event === 'loadeddata'", timeout_s=40
            )
            assert await host.page.evaluate(
                "() => document.getElementById('app').contentDocument === null"
            )  # the sandbox keeps the host out of the player's document
            background = await player.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
            assert background == "rgb(27, 27, 29)"  # the dark theme the host asked for
            submits = len(emulator.submissions())
            await player.locator("#retake").click()
            await player.locator("#confirm-yes").click()
            notice = player.locator("#notice[data-kind='error']")
            await notice.wait_for()
            assert "budget" in (await notice.inner_text()).lower()
            assert len(emulator.submissions()) == submits
            assert len(host.app_calls(TOOL)) == 1
            # The clip that was there stays, playable.
            assert await player.locator("#video").evaluate("v => v.readyState >= 2 && !v.hidden")
            check_protocol(await host.app_messages())
            assert not await host.player_logs("csp-violation")
            assert not [c for c in host.console if "Content Security Policy" in c], host.console


def server_job(host: Any, job_id: str) -> dict[str, Any]:
    """The job's record as the player last saw it through the host."""
    for forwarded in reversed(host.forwarded):
        record = forwarded.result.get("structuredContent") or {}
        if record.get("job_id") == job_id and record.get("status") == "completed":
            return record
    raise AssertionError(f"no completed result for {job_id}")


def check_protocol(messages: list[dict[str, Any]]) -> None:
    """The validator's rules: initialize first with appCapabilities, then initialized; JSON-RPC 2.0
    with known methods only; the size reported."""
    assert messages, "the player sent nothing"
    first = messages[0]
    assert first["method"] == "ui/initialize"
    assert "appCapabilities" in first["params"]
    assert first["params"]["protocolVersion"]
    assert first["params"]["appInfo"]["name"]
    methods = [m.get("method") for m in messages]
    assert methods.index("ui/notifications/initialized") > 0
    for message in messages:
        assert message.get("jsonrpc") == "2.0", message
        if "method" in message:
            assert message["method"] in KNOWN_METHODS, message["method"]
    sizes = [m["params"] for m in messages if m.get("method") == "ui/notifications/size-changed"]
    assert sizes
    assert all(s["height"] > 100 for s in sizes)


async def test_a_failed_job_and_a_stale_job_id_say_why_and_what_next(
    tmp_path: Path, emulator: Emulator
) -> None:
    server = build_server(make_settings(tmp_path / "home", poll=POLL), transport=emulator.transport())
    emulator.fail_next_job("The image was flagged by the content filter")
    with anyio.fail_after(90):
        async with browser() as chromium:
            async with mock_host(server, chromium) as host:
                await host.start(TOOL, arguments(wait_seconds=20))
                player = host.player
                await player.locator("body[data-status='failed']").wait_for(timeout=40_000)
                notice = await player.locator("#notice[data-kind='error']").inner_text()
                assert "flagged by the content filter" in notice
                assert "new take" in notice.lower()
                assert await player.locator("#retake").is_enabled()
                assert await player.locator("#keep").is_hidden()
                assert not host.app_calls("read_video_chunk")
                check_protocol(await host.app_messages())
            # A host showing an old result again, for a job this server does not know.
            async with mock_host(server, chromium) as host:
                stale = f"{MODEL}-ffffffffffff"
                await host.start("get_result", {"job_id": stale})
                player = host.player
                notice = player.locator("#notice[data-kind='error']")
                await notice.wait_for(timeout=20_000)
                assert f"No job has the id '{stale}'" in await notice.inner_text()
                assert await player.locator("#retake").is_hidden()
                assert not [f for f in host.forwarded if f.origin == "app"]
                check_protocol(await host.app_messages())
