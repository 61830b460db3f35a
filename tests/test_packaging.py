"""The registry entry and the package metadata: server.json validates against the MCP Registry's
own schema (vendored in tests/data from modelcontextprotocol/static, schemas/2025-12-11), and every
file that names the project, its version or its repository agrees."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from server import __version__

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "data" / "server.schema.json").read_text())
SERVER = json.loads((ROOT / "server.json").read_text())
MANIFEST = json.loads((ROOT / "packaging" / "manifest.json").read_text())
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def registry_errors(document: dict[str, Any]) -> list[str]:
    validator = Draft7Validator(SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_vendored_schema_is_the_registry_schema_server_json_names() -> None:
    assert SCHEMA["$id"] == SERVER["$schema"]
    Draft7Validator.check_schema(SCHEMA)


def test_server_json_validates_against_the_registry_schema() -> None:
    assert registry_errors(SERVER) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("packages", 0, "version"), "latest"),
        (("name",), "wan-video-mcp"),
        (("description",), "x" * 101),
        (("packages", 0, "transport"), {"type": "carrier-pigeon"}),
    ],
)
def test_the_schema_check_catches_a_broken_entry(path: tuple[str | int, ...], value: object) -> None:
    broken = copy.deepcopy(SERVER)
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert registry_errors(broken)


def test_server_json_describes_the_pypi_package_run_with_uvx_over_stdio() -> None:
    (package,) = SERVER["packages"]
    assert package["registryType"] == "pypi"
    assert package["identifier"] == PROJECT["name"] == "wan-video-mcp"
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}
    variables = {v["name"]: v for v in package["environmentVariables"]}
    for key in ("WAVESPEED_API_KEY", "VTRIX_API_KEY"):
        assert variables[key]["isSecret"] is True
        assert variables[key]["isRequired"] is False
    assert not any(v.get("isSecret") for name, v in variables.items() if not name.endswith("_KEY"))


def test_every_file_agrees_on_the_version() -> None:
    versions = {
        "pyproject.toml": PROJECT["version"],
        "server.__version__": __version__,
        "server.json": SERVER["version"],
        "server.json package": SERVER["packages"][0]["version"],
        "manifest.json": MANIFEST["version"],
    }
    assert len(set(versions.values())) == 1, versions


def test_every_file_agrees_on_the_repository_and_the_registry_name() -> None:
    repository = PROJECT["urls"]["Repository"]
    assert SERVER["repository"]["url"] == repository
    assert MANIFEST["repository"]["url"] == repository
    owner = repository.removeprefix("https://github.com/").split("/")[0]
    assert SERVER["name"] == f"io.github.{owner}/{PROJECT['name']}"
    # The registry proves ownership by finding this line in the PyPI description (the README).
    assert PROJECT["readme"] == "README.md"
    assert f"mcp-name: {SERVER['name']}" in (ROOT / "README.md").read_text()


def test_the_package_metadata_is_ready_to_publish() -> None:
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert {"Homepage", "Repository", "Issues"} <= set(PROJECT["urls"])
    assert "Programming Language :: Python :: 3.11" in PROJECT["classifiers"]
    assert PROJECT["scripts"] == {"wan-video-mcp": "server.cli:main"}
