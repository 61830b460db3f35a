"""Hosted deployments, piece by piece: WaveSpeed's webhook signature and payload, the settings that
turn replicas and webhooks on, and what ``doctor`` says about the journal and the webhooks."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from server.errors import ConfigError
from server.jobs.store import SCHEMA_VERSION
from server.jobs.store.postgres import PostgresStore
from server.providers.webhooks import parse_callback, sign, verify
from server.settings import Settings
from tests.conftest import VX_KEY, WS_KEY
from tests.test_cli import base_env, loopback, wan

SECRET = "whsec_0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000
BODY = json.dumps({"id": "task-1", "status": "completed", "outputs": ["https://x/v.mp4"]}).encode()


def headers(
    body: bytes = BODY, *, secret: str = SECRET, at: int = NOW, delivery: str = "msg_1"
) -> dict[str, str]:
    return {
        "webhook-id": delivery,
        "webhook-timestamp": str(at),
        "webhook-signature": sign(secret, delivery, at, body),
    }


def test_a_signature_over_id_timestamp_and_raw_body_is_accepted() -> None:
    signed = headers()
    assert signed["webhook-signature"].startswith("v3,")
    assert verify(signed, BODY, SECRET, NOW) == "ok"
    # The key is the secret without its prefix, used as text: either spelling verifies.
    assert verify(signed, BODY, SECRET.removeprefix("whsec_"), NOW) == "ok"
    rotated = {**signed, "webhook-signature": "v3,deadbeef " + signed["webhook-signature"]}
    assert verify(rotated, BODY, SECRET, NOW) == "ok"


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        ({"webhook-signature": "v3," + "0" * 64}, "bad_signature"),
        ({"webhook-signature": "v1,abc"}, "bad_signature"),
        ({"webhook-id": "msg_2"}, "bad_signature"),
        ({"webhook-timestamp": str(NOW - 301)}, "stale"),
        ({"webhook-timestamp": str(NOW + 301)}, "stale"),
        ({"webhook-timestamp": "soon"}, "missing"),
        ({"webhook-signature": ""}, "missing"),
    ],
)
def test_a_forged_stale_or_incomplete_delivery_is_refused(change: dict[str, str], verdict: str) -> None:
    assert verify({**headers(), **change}, BODY, SECRET, NOW) == verdict


def test_a_changed_body_or_another_secret_fails_the_signature() -> None:
    assert verify(headers(), BODY.replace(b"completed", b"failed"), SECRET, NOW) == "bad_signature"
    assert verify(headers(), BODY, "whsec_another", NOW) == "bad_signature"
    assert verify(headers(at=NOW - 300), BODY, SECRET, NOW) == "ok"


def test_a_callback_names_its_task_bare_or_wrapped() -> None:
    bare = parse_callback(BODY)
    assert bare is not None
    assert (bare.task_id, bare.status) == ("task-1", "completed")
    wrapped = parse_callback(json.dumps({"code": 200, "data": {"id": "t2", "status": "failed"}}).encode())
    assert wrapped is not None
    assert wrapped.task_id == "t2"
    for junk in (b"not json", b"[]", b'{"status": "completed"}', b'{"id": 7}'):
        assert parse_callback(junk) is None


def test_a_database_url_turns_on_stateless_http_unless_told_otherwise() -> None:
    url = "postgresql://app:pw@db/wan"
    shared = Settings.from_env({"WAN_MCP_DATABASE_URL": url})
    assert shared.database_url is not None
    assert shared.http.stateless
    assert not Settings.from_env({"WAN_MCP_DATABASE_URL": url, "WAN_MCP_HTTP_STATELESS": "0"}).http.stateless
    assert Settings.from_env({"WAN_MCP_HTTP_STATELESS": "1"}).http.stateless
    assert not Settings.from_env({}).http.stateless
    assert "pw" not in repr(shared)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WAN_MCP_DATABASE_URL": "mysql://x"}, "must be a PostgreSQL URL"),
        ({"WAN_MCP_PUBLIC_URL": "example.com"}, "WAN_MCP_PUBLIC_URL"),
        ({"WAN_MCP_LEASE_SECONDS": "30"}, "0.5 to 15"),
        ({"WAN_MCP_REQUEST_STATE_KEYS": "short"}, "at least 32"),
    ],
)
def test_bad_hosting_settings_say_what_to_fix(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(env)


def test_a_public_url_names_the_webhook_route() -> None:
    settings = Settings.from_env({"WAN_MCP_PUBLIC_URL": "https://video.example.com/"})
    assert settings.webhook_url == "https://video.example.com/webhooks/wavespeed"
    assert Settings.from_env({}).webhook_url is None


@pytest.mark.anyio
async def test_doctor_reports_the_sqlite_journal_and_webhooks_off(tmp_path: Path) -> None:
    code, out = await wan("doctor", "--no-check", env=base_env(tmp_path, WAVESPEED_API_KEY=WS_KEY))
    assert code == 0, out
    assert "database   sqlite at" in out
    assert "will be created" in out
    assert "off (WAN_MCP_PUBLIC_URL unset)" in out


@pytest.mark.anyio
async def test_doctor_reports_the_postgres_journal_without_its_password_and_webhooks_on(
    tmp_path: Path, postgres_dsn: str, loopback_emulator: str
) -> None:
    store = await PostgresStore.open(postgres_dsn)
    await store.close()
    with_password = postgres_dsn.replace("test@", "test:hunter2-secret@")
    env = base_env(
        tmp_path,
        **loopback(loopback_emulator),
        WAN_MCP_DATABASE_URL=with_password,
        WAN_MCP_PUBLIC_URL="https://video.example.com",
    )
    code, out = await wan("doctor", env=env)
    assert code == 0, out
    assert "database   postgresql at postgresql://test:***@" in out
    assert f"reachable; schema version {SCHEMA_VERSION} (current)" in out
    assert "on: WaveSpeed calls back at https://video.example.com/webhooks/wavespeed" in out
    assert "hunter2" not in out
    assert VX_KEY not in out


@pytest.mark.anyio
async def test_doctor_says_an_unreachable_database_is_unreachable(tmp_path: Path) -> None:
    from bench.fleet import free_port

    env = base_env(tmp_path, WAN_MCP_DATABASE_URL=f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none")
    with anyio.fail_after(60):
        code, out = await wan("doctor", "--no-check", env=env)
    assert "NOT reachable; unreachable" in out, out
    assert ":pw@" not in out
    assert code == 1  # no key either: nothing is usable


def test_secret_settings_never_show_in_repr() -> None:
    settings = Settings(database_url=SecretStr("postgresql://a:b@c/d"))
    assert "a:b" not in repr(settings)
