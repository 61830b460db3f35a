"""``wan-video-mcp doctor``: whether this install is intact, what is configured, which models can
run, and whether the keys work.

It prints to stdout (it is not the MCP server). A key is only ever shown as set or unset.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import anyio
import httpx
from pydantic import SecretStr

from server import __version__
from server.catalog import ModelSpec, ProviderName, load_catalog
from server.errors import AuthError, ConfigError, ProviderError
from server.install_check import InstallCheck, check_install
from server.jobs.store.base import SCHEMA_VERSION
from server.providers import build_providers
from server.providers.http import safe_url
from server.settings import Settings

KEY_VARIABLES: dict[ProviderName, str] = {"wavespeed": "WAVESPEED_API_KEY", "vtrix": "VTRIX_API_KEY"}
PROVIDER_LABELS: dict[ProviderName, str] = {"wavespeed": "WaveSpeed", "vtrix": "Vtrix"}
CHECK_SECONDS = 20.0

KeyState = Literal["accepted", "refused", "unreachable", "unset", "unchecked"]
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_ALWAYS_SHOWN = (
    "WAVESPEED_API_KEY",
    "VTRIX_API_KEY",
    "WAVESPEED_BASE_URL",
    "VTRIX_BASE_URL",
    "WAN_MCP_HOME",
    "WAN_MCP_OUTPUT_DIR",
    "WAN_MCP_ALLOWED_DIRS",
    "WAN_MCP_MODELS",
    "WAN_MCP_SANDBOX",
    "WAN_MCP_DATABASE_URL",
    "WAN_MCP_PUBLIC_URL",
)


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """One provider's key: whether it is set and what the provider said about it."""

    provider: ProviderName
    variable: str
    state: KeyState
    detail: str
    base_url: str

    @property
    def usable(self) -> bool:
        return self.state in ("accepted", "unchecked")


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    """The journal: which engine, whether it answers, and how far it is migrated."""

    engine: str
    where: str
    reachable: bool
    schema_version: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Everything ``doctor`` found; ``render`` turns it into text."""

    settings: Settings
    environ: dict[str, str]
    models: tuple[ModelSpec, ...]
    keys: dict[ProviderName, KeyCheck]
    install: InstallCheck
    database: DatabaseCheck | None = None
    webhooks: str = "off (WAN_MCP_PUBLIC_URL unset): jobs are polled"

    def usable_models(self) -> list[ModelSpec]:
        return [m for m in self.models if self.keys[m.provider].usable]


def is_secret(name: str) -> bool:
    """Whether an environment variable's value must never be printed."""
    return any(word in name.upper() for word in _SECRET_WORDS)


async def diagnose(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    check_keys: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    install: InstallCheck | None = None,
) -> Diagnosis:
    """Check every provider that an enabled model needs with one cheap authenticated call.

    In sandbox mode the checks go to a freshly started emulator, as the server's would.
    ``install`` is the check of this environment's ``server`` and ``tools`` (made here when None).
    """
    models = load_catalog().select(settings.models)
    needed = {m.provider for m in models}
    async with (
        _effective(settings) as effective,
        httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(min(effective.http_timeout, 10.0)),
            follow_redirects=False,
            headers={"User-Agent": "wan-video-mcp doctor"},
        ) as client,
    ):
        providers = build_providers(effective, client)
        keys: dict[ProviderName, KeyCheck] = {}

        async def check(name: ProviderName) -> None:
            keys[name] = await _check(effective, name, providers[name].check_key, check_keys)

        async with anyio.create_task_group() as group:
            for name in KEY_VARIABLES:
                if name in needed:
                    group.start_soon(check, name)
                else:
                    keys[name] = _unchecked(effective, name, "no enabled model needs it")
        webhooks = await _check_webhooks(effective, providers["wavespeed"].webhook_secret, check_keys)
    database = await check_database(settings)
    return Diagnosis(
        settings=settings,
        environ=dict(environ),
        models=models,
        keys=keys,
        install=install if install is not None else check_install(),
        database=database,
        webhooks=webhooks,
    )


async def check_database(settings: Settings) -> DatabaseCheck:
    """Open the journal read-only (nothing is created or migrated) and read its schema version."""
    if settings.database_url is None:
        path = settings.database_path
        if not path.exists():
            return DatabaseCheck("sqlite", str(path), True, None, f"{_where(path)} on first start")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            return DatabaseCheck("sqlite", str(path), False, None, f"cannot be read: {exc}")
        return DatabaseCheck("sqlite", str(path), True, version, _schema_note(version))
    from server.jobs.store.postgres import safe_dsn

    dsn = settings.database_url.get_secret_value()
    try:
        import psycopg
    except ImportError:
        return DatabaseCheck(
            "postgresql",
            safe_dsn(dsn),
            False,
            None,
            "psycopg is not installed: install wan-video-mcp[postgres]",
        )
    try:
        with anyio.fail_after(CHECK_SECONDS):
            async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=10
            ) as conn:
                found = await (
                    await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
                ).fetchone()
                version = 0
                if found is not None and found[0]:
                    row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
                    version = int(row[0] or 0) if row is not None else 0
    except (psycopg.Error, TimeoutError, OSError) as exc:
        return DatabaseCheck("postgresql", safe_dsn(dsn), False, None, f"unreachable ({type(exc).__name__})")
    return DatabaseCheck("postgresql", safe_dsn(dsn), True, version, _schema_note(version))


def _schema_note(version: int) -> str:
    if version == SCHEMA_VERSION:
        return f"schema version {version} (current)"
    if version < SCHEMA_VERSION:
        return f"schema version {version}; the server migrates it to {SCHEMA_VERSION} on start"
    return f"schema version {version}, NEWER than this server's {SCHEMA_VERSION}: upgrade wan-video-mcp"


async def _check_webhooks(
    settings: Settings, secret: Callable[[], Awaitable[str | None]], enabled: bool
) -> str:
    if settings.webhook_url is None:
        return "off (WAN_MCP_PUBLIC_URL unset): jobs are polled"
    where = f"WaveSpeed calls back at {safe_url(settings.webhook_url)}"
    if settings.wavespeed_api_key is None:
        return f"set, but off: WAVESPEED_API_KEY is unset ({where})"
    if not enabled:
        return f"on, secret not checked (--no-check): {where}"
    try:
        with anyio.fail_after(CHECK_SECONDS):
            await secret()
    except (ProviderError, TimeoutError) as exc:
        return f"set, but off: the webhook secret could not be read ({exc}); jobs are polled"
    return f"on: {where}; Vtrix is polled"


def _effective(settings: Settings) -> AbstractAsyncContextManager[Settings]:
    from server.core import effective_settings

    return effective_settings(settings)


def _key_of(settings: Settings, name: ProviderName) -> SecretStr | None:
    return settings.wavespeed_api_key if name == "wavespeed" else settings.vtrix_api_key


def _base_of(settings: Settings, name: ProviderName) -> str:
    return safe_url(settings.wavespeed_base_url if name == "wavespeed" else settings.vtrix_base_url)


def _unchecked(settings: Settings, name: ProviderName, why: str) -> KeyCheck:
    state: KeyState = "unset" if _key_of(settings, name) is None else "unchecked"
    detail = "not set" if state == "unset" else f"set, not checked ({why})"
    return KeyCheck(name, KEY_VARIABLES[name], state, detail, _base_of(settings, name))


async def _check(
    settings: Settings, name: ProviderName, call: Callable[[], Awaitable[str]], enabled: bool
) -> KeyCheck:
    if _key_of(settings, name) is None or not enabled:
        return _unchecked(settings, name, "--no-check")
    variable, base = KEY_VARIABLES[name], _base_of(settings, name)
    try:
        with anyio.fail_after(CHECK_SECONDS):
            said = await call()
    except AuthError as exc:
        return KeyCheck(name, variable, "refused", str(exc), base)
    except ProviderError as exc:
        return KeyCheck(name, variable, "unreachable", f"could not check the key: {exc}", base)
    except TimeoutError:
        return KeyCheck(name, variable, "unreachable", f"no answer within {CHECK_SECONDS:.0f} s", base)
    return KeyCheck(name, variable, "accepted", said, base)


def _where(path: Path) -> str:
    if path.exists():
        kind = "folder" if path.is_dir() else "file"
        writable = os.access(path, os.W_OK)
        return f"{kind} exists{'' if writable else ', NOT writable'}"
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and os.access(parent, os.W_OK):
        return "will be created"
    return "cannot be created (no writable parent)"


def _env_line(name: str, environ: Mapping[str, str]) -> str:
    raw = environ.get(name, "").strip()
    if is_secret(name):
        value = "set" if raw else "unset"
    elif not raw:
        value = "unset (default)"
    elif name.endswith("_BASE_URL"):
        value = safe_url(raw)
    elif name == "WAN_MCP_DATABASE_URL":
        from server.jobs.store.postgres import safe_dsn

        value = safe_dsn(raw)
    else:
        value = raw
    return f"  {name:<28} {value}"


def render(diagnosis: Diagnosis) -> str:
    """The report as text: environment, providers, models, files, verdict."""
    settings, env = diagnosis.settings, diagnosis.environ
    lines = [f"wan-video-mcp {__version__} doctor", ""]
    if settings.sandbox:
        lines.append(
            "Mode: SANDBOX: every provider is the built-in emulator (no key needed, nothing charged)."
        )
    else:
        lines.append("Mode: real providers (add --sandbox or WAN_MCP_SANDBOX=1 to try without a key).")
    lines += ["", *_install_lines(diagnosis.install)]
    lines += ["", "Environment (keys are shown only as set or unset):"]
    names = list(_ALWAYS_SHOWN) + sorted(
        n for n in env if n.startswith("WAN_MCP_") and n not in _ALWAYS_SHOWN
    )
    lines += [_env_line(name, env) for name in names]

    lines += ["", "Providers:"]
    for name in KEY_VARIABLES:
        check = diagnosis.keys[name]
        key = "(sandbox key)" if settings.sandbox else check.variable
        lines.append(f"  {PROVIDER_LABELS[name]:<10} {key:<18} {check.state:<11} {check.detail}")
        lines.append(f"  {'':<10} at {check.base_url}")

    usable = diagnosis.usable_models()
    lines += ["", f"Models ({len(diagnosis.models)} enabled, {len(usable)} usable):"]
    for spec in diagnosis.models:
        check = diagnosis.keys[spec.provider]
        mark = "ok" if check.usable else "--"
        if check.usable:
            need = "emulated" if settings.sandbox else f"uses {check.variable}"
        elif check.state == "unset":
            need = f"set {check.variable} to use it"
        elif check.state == "refused":
            need = f"{check.variable} refused"
        else:
            need = f"{PROVIDER_LABELS[spec.provider]} unreachable"
        lines.append(f"  {mark}  {spec.slug:<32} {PROVIDER_LABELS[spec.provider]:<10} {need}")

    lines += [
        "",
        "Files:",
        f"  home       {settings.home}  ({_where(settings.home)})",
        f"  videos     {settings.videos_dir}  ({_where(settings.videos_dir)})",
        "  local images may be read from (and the server's own home and videos folders):",
    ]
    lines += [f"    {d}  ({'exists' if d.is_dir() else 'missing'})" for d in settings.allowed_dirs]
    if (db := diagnosis.database) is not None:
        state = "reachable" if db.reachable else "NOT reachable"
        lines += [
            "",
            "Journal:",
            f"  database   {db.engine} at {db.where}",
            f"             {state}; {db.detail}",
        ]
    lines += ["", "Webhooks:", f"  {diagnosis.webhooks}"]
    lines += ["", _verdict(diagnosis)]
    return "\n".join(lines) + "\n"


def _install_lines(check: InstallCheck) -> list[str]:
    how = {
        "installed": f"wan-video-mcp {check.version}, installed",
        "editable": f"wan-video-mcp {check.version}, editable install",
        "checkout": "a source checkout (not installed)",
    }[check.mode]
    lines = [f"Install: {how}; {'its own server and tools packages' if check.ok else 'BROKEN'}"]
    lines += [f"  {o.name:<10} {o.path or 'not found'}" for o in check.origins]
    return lines + [f"  PROBLEM: {problem}" for problem in check.problems]


def _verdict(diagnosis: Diagnosis) -> str:
    if not diagnosis.install.ok:
        return "\n".join(
            ["NOT READY: this environment's copy is broken. To fix it:"]
            + [f"  - {problem}" for problem in diagnosis.install.problems]
        )
    usable, total = diagnosis.usable_models(), len(diagnosis.models)
    todo: list[str] = []
    for name in KEY_VARIABLES:
        check = diagnosis.keys[name]
        blocked = [m.slug for m in diagnosis.models if m.provider == name and not check.usable]
        if not blocked:
            continue
        label, models = PROVIDER_LABELS[name], ", ".join(blocked)
        if check.state == "unset":
            todo.append(f"  - set {check.variable} to use {models}")
        elif check.state == "refused":
            todo.append(f"  - {label} refused {check.variable}: check or replace it (needed by {models})")
        else:
            todo.append(
                f"  - {label} could not be reached at {check.base_url}: check the network or "
                f"{name.upper()}_BASE_URL (needed by {models})"
            )
    if not usable:
        todo.append("  - or try everything free with --sandbox (WAN_MCP_SANDBOX=1)")
        head = "NOT READY: no enabled model is usable. To fix it:"
    elif len(usable) == total:
        head = f"OK: all {total} enabled models are usable."
    else:
        head = f"OK: {len(usable)} of {total} enabled models are usable. For the others:"
    return "\n".join([head, *todo])


def run_doctor(*, sandbox: bool = False, check_keys: bool = True, out: TextIO | None = None) -> int:
    """Print the report; 0 when at least one enabled model is usable, 1 when none is or the
    install is broken (another distribution's ``server`` or ``tools``), 2 on bad config."""
    stream = out if out is not None else sys.stdout
    environ = dict(os.environ)
    try:
        settings = Settings.from_env(environ)
        if sandbox:
            settings = settings.model_copy(update={"sandbox": True})
        diagnosis = anyio.run(lambda: diagnose(settings, environ, check_keys=check_keys))
    except ConfigError as exc:
        stream.write(f"wan-video-mcp doctor: configuration error: {exc}\n")  # stdout-ok
        return 2
    stream.write(render(diagnosis))  # stdout-ok
    stream.flush()
    return 0 if diagnosis.usable_models() and diagnosis.install.ok else 1
