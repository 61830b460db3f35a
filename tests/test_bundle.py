"""The Claude Desktop bundle: ``mcpb validate`` accepts the manifest, ``scripts/bundle`` packs it with
the MCPB CLI from package.json, and the packed bundle starts as the host would start it.

For the last part the test unpacks the ``.mcpb``, asks the MCPB library's own
``getMcpConfigForManifest`` (the substitution Claude Desktop uses) for the command, arguments and
environment given some user settings, and runs what ``uv run --directory <bundle> wan-video-mcp``
runs once uv has installed the project: the bundle's own ``server`` package with those arguments
and that environment, driven over stdio by the SDK client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.demo import make_sample_image
from tests.contract import TOOL_NAMES
from tests.mcp_helpers import structured, text_of
from tests.test_inspector import NODE_MIN, _node_version, _search_path  # pyright: ignore[reportPrivateUsage]

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "packaging" / "manifest.json"
MCPB = ROOT / "node_modules" / ".bin" / "mcpb"
MCPB_VERSION = "2.1.2"

CONFIG_SCRIPT = """
import { readFileSync } from "node:fs";
import { getMcpConfigForManifest } from "@anthropic-ai/mcpb";
const [manifestPath, extensionPath, home, userConfig] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
const config = await getMcpConfigForManifest({
  manifest, extensionPath, pathSeparator: "/", userConfig: JSON.parse(userConfig),
  systemDirs: { HOME: home, DESKTOP: home + "/Desktop", DOCUMENTS: home + "/Documents" },
});
process.stdout.write(JSON.stringify(config));
"""


@pytest.fixture(scope="module")
def node_env() -> dict[str, str]:
    path = _search_path()
    node = shutil.which("node", path=path)
    if node is None or _node_version(node) < NODE_MIN or not MCPB.is_file():
        pytest.fail(
            "The bundle tests need Node >= 22.19 and @anthropic-ai/mcpb: run ./scripts/test (npm ci)."
        )
    package = ROOT / "node_modules" / "@anthropic-ai" / "mcpb" / "package.json"
    assert json.loads(package.read_text())["version"] == MCPB_VERSION
    return {**os.environ, "PATH": path, "NO_COLOR": "1"}


def run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=180, check=False)
    assert done.returncode == 0, f"{command} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def bundle(node_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "wan-video-mcp.mcpb"
    run([str(ROOT / "scripts" / "bundle"), str(out)], node_env)
    return out


def test_mcpb_validate_accepts_the_manifest(node_env: dict[str, str]) -> None:
    output = run([str(MCPB), "validate", str(MANIFEST)], node_env)
    assert "Manifest schema validation passes!" in output


def test_the_manifest_asks_for_the_keys_folders_sandbox_and_budget() -> None:
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["manifest_version"] == "0.4"
    assert manifest["server"]["type"] == "uv"
    config = manifest["user_config"]
    assert config["wavespeed_api_key"]["sensitive"] is True
    assert config["vtrix_api_key"]["sensitive"] is True
    assert config["allowed_dirs"]["type"] == "directory"
    assert config["allowed_dirs"]["multiple"] is True
    assert config["sandbox"]["type"] == "boolean"
    env = manifest["server"]["mcp_config"]["env"]
    assert env["WAVESPEED_API_KEY"] == "${user_config.wavespeed_api_key}"
    assert env["VTRIX_API_KEY"] == "${user_config.vtrix_api_key}"
    assert {"WAN_MCP_MAX_JOB_USD", "WAN_MCP_BUDGET_USD", "WAN_MCP_BUDGET_PERIOD"} <= set(env)
    # Every setting the server reads from the bundle has a default, so none reaches it unsubstituted.
    assert all("default" in option for option in config.values())


def test_scripts_bundle_packs_the_sources_and_nothing_else(bundle: Path) -> None:
    names = set(zipfile.ZipFile(bundle).namelist())
    must = {"manifest.json", "icon.png", "pyproject.toml", "README.md", "LICENSE", "server/cli.py"}
    must |= {"server/catalog/models.toml", "tools/__init__.py", "tools/prompts.py"}
    assert must <= names
    assert not any(n.startswith(("tests/", "bench/", "node_modules/", ".venv/", ".git/")) for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    packed = json.loads(zipfile.ZipFile(bundle).read("manifest.json"))
    assert packed == json.loads(MANIFEST.read_text())


def host_config(node_env: dict[str, str], unpacked: Path, home: Path, user: dict[str, Any]) -> dict[str, Any]:
    # Inside node_modules, so that "@anthropic-ai/mcpb" resolves as it does for the project.
    runner = ROOT / "node_modules" / f".host-config-{os.getpid()}.mjs"
    runner.write_text(CONFIG_SCRIPT)
    try:
        arguments = [str(unpacked / "manifest.json"), str(unpacked), str(home), json.dumps(user)]
        return json.loads(run(["node", str(runner), *arguments], node_env))
    finally:
        runner.unlink()


async def list_and_generate(
    params: StdioServerParameters, image: Path
) -> tuple[list[str], dict[str, Any], str]:
    async with Client(params) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        arguments = {"image": str(image), "prompt": "the sun sets", "wait_seconds": 30}
        with anyio.fail_after(60):
            record = structured(await client.call_tool("wan22_i2v_480p_ultra_fast_generate_video", arguments))
        outside = await client.call_tool(
            "wan22_i2v_480p_ultra_fast_generate_video",
            {**arguments, "image": str(image.parent.parent / "x.png")},
        )
        return names, record, text_of(outside)


@pytest.mark.anyio
async def test_the_bundle_runs_as_the_host_starts_it(
    bundle: Path, node_env: dict[str, str], tmp_path: Path
) -> None:
    unpacked = tmp_path / "extension"
    zipfile.ZipFile(bundle).extractall(unpacked)
    home = tmp_path / "user"
    pictures = home / "Pictures"
    make_sample_image(home / "x.png")
    image = make_sample_image(pictures / "sunset.png")
    # The user's settings as the install dialog stores them; the folder is left at its default.
    config = host_config(node_env, unpacked, home, {"sandbox": True, "max_job_usd": "0.50"})
    args = config["args"]
    assert config["command"] == "uv"
    assert args[:4] == ["run", "--directory", str(unpacked), "wan-video-mcp"]
    # The library leaves ${HOME} inside a default as it is; the server expands it.
    assert args[4:] == ["serve", "--allowed-dirs", "${HOME}/Pictures"]
    env = config["env"]
    assert env["WAN_MCP_SANDBOX"] == "true"
    assert env["WAN_MCP_MAX_JOB_USD"] == "0.50"
    assert env["WAVESPEED_API_KEY"] == ""
    # What uv runs after installing the project: the console script, that is server.cli, from the bundle.
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", *args[4:]],
        env={
            **env,
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "WAN_MCP_HOME": str(tmp_path / "data"),
        },
        cwd=str(unpacked),
    )
    names, record, refused = await list_and_generate(params, image)
    assert names == TOOL_NAMES
    assert record["status"] == "completed"
    assert record["sandbox"] is True
    # The folder setting reached the server: inside it is readable, outside it is refused.
    assert f"is outside the folders this server may read ({pictures}," in refused
    assert Path(record["local_path"]).is_relative_to(tmp_path / "data")
