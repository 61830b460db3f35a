"""Whether ``server`` and ``tools`` are this distribution's own files.

The design's top-level import packages have generic names, and other distributions ship the same
ones: installing PyPI ``mcp-wan`` into the same environment overwrites ``tools/__init__.py`` without
a warning. This module finds where each package is imported from, compares the files an installer
wrote with the hashes in the distribution's ``RECORD``, and names any other distribution that
claims the same top-level package. Standard library only, so it still runs when the collision broke
the rest.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DISTRIBUTION = "wan-video-mcp"
PACKAGES = ("server", "tools")
ISOLATED_FIX = (
    "Run wan-video-mcp in an environment of its own: uvx wan-video-mcp, pipx install wan-video-mcp, "
    "or the Claude Desktop bundle."
)


@dataclass(frozen=True, slots=True)
class PackageOrigin:
    """Where one top-level package is imported from."""

    name: str
    path: Path | None  # its __init__.py; None when it cannot be found


@dataclass(frozen=True, slots=True)
class InstallCheck:
    """What the check found; ``problems`` is empty when both packages are ours and intact."""

    version: str | None  # of the installed distribution; None when running from a plain checkout
    mode: str  # "installed", "editable" or "checkout"
    origins: tuple[PackageOrigin, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def check_install(path: Sequence[str] | None = None) -> InstallCheck:
    """Check the running environment (``path`` None) or the site folders in ``path``."""
    origins = tuple(PackageOrigin(name, _origin(name, path)) for name in PACKAGES)
    problems: list[str] = []
    for origin in origins:
        if origin.path is None:
            problems.append(f"The package '{origin.name}' cannot be found. {ISOLATED_FIX}")
    ours = _distribution(path)
    if ours is None:
        return InstallCheck(None, "checkout", origins, tuple(problems))
    others = _claimants(path, exclude=ours)
    editable_root = _editable_root(ours)
    if editable_root is not None:
        for origin in origins:
            if origin.path is not None and not origin.path.is_relative_to(editable_root):
                problems.append(_foreign(origin, f"outside the editable checkout {editable_root}", others))
        return InstallCheck(ours.version, "editable", origins, tuple(problems))
    problems += _compare_with_record(ours, origins, others)
    return InstallCheck(ours.version, "installed", origins, tuple(problems))


def _origin(name: str, path: Sequence[str] | None) -> Path | None:
    if path is None:
        spec = importlib.util.find_spec(name)
    else:
        spec = importlib.machinery.PathFinder.find_spec(name, list(path))
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve()


def _distribution(path: Sequence[str] | None) -> importlib.metadata.Distribution | None:
    return next(iter(_distributions(path, DISTRIBUTION)), None)


def _distributions(
    path: Sequence[str] | None, name: str | None = None
) -> list[importlib.metadata.Distribution]:
    Context = importlib.metadata.DistributionFinder.Context
    context = Context(name=name) if path is None else Context(name=name, path=list(path))
    return list(importlib.metadata.Distribution.discover(context=context))


def _editable_root(dist: importlib.metadata.Distribution) -> Path | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = str(info.get("url", ""))
    if not info.get("dir_info", {}).get("editable") or not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://")).resolve()


def _claimants(path: Sequence[str] | None, exclude: importlib.metadata.Distribution) -> dict[str, list[str]]:
    """Top-level package -> the other installed distributions whose files include it."""
    found: dict[str, list[str]] = {name: [] for name in PACKAGES}
    for dist in _distributions(path):
        name = dist.metadata["Name"] or "?"
        if name == exclude.metadata["Name"]:
            continue
        tops = {PurePosixPath(str(f)).parts[0] for f in dist.files or () if PurePosixPath(str(f)).parts}
        for package in PACKAGES:
            if package in tops and name not in found[package]:
                found[package].append(name)
    return found


def _compare_with_record(
    dist: importlib.metadata.Distribution, origins: Sequence[PackageOrigin], others: dict[str, list[str]]
) -> list[str]:
    problems: list[str] = []
    for origin in origins:
        entry = f"{origin.name}/__init__.py"
        recorded = next((f for f in dist.files or () if str(f) == entry), None)
        if recorded is None:
            problems.append(f"{DISTRIBUTION}'s RECORD does not list {entry}: reinstall it. {ISOLATED_FIX}")
            continue
        expected = Path(str(dist.locate_file(recorded))).resolve()
        if origin.path is not None and origin.path != expected:
            problems.append(_foreign(origin, f"from {origin.path}, not {expected}", others))
            continue
        changed = [
            str(f)
            for f in dist.files or ()
            if PurePosixPath(str(f)).parts[:1] == (origin.name,)
            and f.hash is not None
            and not _intact(dist, f)
        ]
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            problems.append(_foreign(origin, f"has files changed or removed since install ({shown})", others))
    return problems


def _intact(dist: importlib.metadata.Distribution, item: importlib.metadata.PackagePath) -> bool:
    assert item.hash is not None
    try:
        data = Path(str(dist.locate_file(item))).read_bytes()
    except OSError:
        return False
    digest = base64.urlsafe_b64encode(hashlib.new(item.hash.mode, data).digest()).rstrip(b"=").decode()
    return digest == item.hash.value


def _foreign(origin: PackageOrigin, what: str, others: dict[str, list[str]]) -> str:
    rivals = others.get(origin.name, [])
    verb = "ships" if len(rivals) == 1 else "ship"
    who = f" {', '.join(rivals)} also {verb} a top-level '{origin.name}' package." if rivals else ""
    undo = (
        f" Here: pip uninstall {' '.join(rivals)}, then pip install --force-reinstall {DISTRIBUTION}."
        if rivals
        else ""
    )
    return f"The package '{origin.name}' {what}.{who} {ISOLATED_FIX}{undo}"


__all__ = ["DISTRIBUTION", "InstallCheck", "PackageOrigin", "check_install"]
