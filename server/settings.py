"""Configuration, read from the environment in this one place (see contract.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from server.errors import ConfigError

DEFAULT_WAVESPEED_BASE_URL = "https://api.wavespeed.ai"
DEFAULT_VTRIX_BASE_URL = "https://cloud.vtrix.ai"
# Some MCP clients drop a tool call at 60 s; a generate call returns well before that.
DEFAULT_WAIT_SECONDS = 40.0
MAX_WAIT_SECONDS = 600.0
# stitch_videos' bounds, here beside the other bounds the tools publish (tools/list needs no media code).
MAX_PARTS = 20
MAX_CROSSFADE_SECONDS = 2.0
WEBHOOK_PATH = "/webhooks/wavespeed"


def _default_home() -> Path:
    from platformdirs import user_data_path

    return user_data_path("wan-video-mcp", appauthor=False)


DEFAULT_PROVIDER_RATE = 10.0


class PollPolicy(BaseModel):
    """How the runner paces status polls and retries. Tests use zeros.

    ``adaptive`` (the server's default, ``DEFAULT_POLL``) plans each poll from what jobs of the same
    kind were seen to take (server/jobs/schedule.py): ``cold_interval`` apart until five have
    finished, then dense where they usually end and sparse elsewhere, always ``min_interval`` to
    ``max_interval`` apart.
    Otherwise polls are ``interval`` apart; an ``interval`` of 0 polls at once in either mode.
    ``provider_rate`` caps the status polls sent to each provider (requests per second, after a
    burst of ``provider_burst``); None sends them unpaced.
    """

    model_config = ConfigDict(frozen=True)

    interval: float = Field(default=2.0, ge=0)
    max_interval: float = Field(default=10.0, ge=0)
    adaptive: bool = False
    min_interval: float = Field(default=0.4, ge=0)
    cold_interval: float = Field(default=1.1, gt=0)
    provider_rate: float | None = Field(default=None, gt=0)
    provider_burst: int = Field(default=10, ge=1)
    retry_base: float = Field(default=0.5, ge=0)
    retry_cap: float = Field(default=30.0, ge=0)
    submit_attempts: int = Field(default=3, ge=1)
    # How long after a lost submit "the provider has no such job" is taken as final.
    reconcile_grace: float = Field(default=120.0, ge=0)
    heartbeat: float = Field(default=5.0, gt=0)
    # The longest a live job goes unfollowed when the process polling it dies: another process
    # takes it over within this time (the runner's LEASE_HOLD and LEASE_TICK say how).
    lease_seconds: float = Field(default=10.0, ge=0.5, le=15.0)
    # With a provider that calls back (webhooks), polls are only a safety net this far apart.
    webhook_poll_interval: float = Field(default=60.0, ge=0)


# What the server runs with unless told otherwise: adaptive polls, at least every 20 s, and at most
# 10 requests/s to each provider.
DEFAULT_POLL = PollPolicy(adaptive=True, max_interval=20.0, provider_rate=DEFAULT_PROVIDER_RATE)


class SpendPolicy(BaseModel):
    """Money rules, all enforced before a job is submitted."""

    model_config = ConfigDict(frozen=True)

    max_job_usd: float | None = Field(default=None, ge=0)
    budget_usd: float | None = Field(default=None, ge=0)
    budget_period_hours: float = Field(default=24.0, gt=0)
    confirm_above_usd: float | None = Field(default=None, ge=0)
    dedupe_hours: float = Field(default=24.0, ge=0)


class HttpPolicy(BaseModel):
    """Who may talk to the Streamable HTTP transport."""

    model_config = ConfigDict(frozen=True)

    token: SecretStr | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # No per-process sessions: any replica behind a load balancer answers any request.
    stateless: bool = False
    # Shared by every replica, so a confirmation sealed by one is opened by another (first seals).
    request_state_keys: tuple[SecretStr, ...] = ()


class Settings(BaseModel):
    """Everything the server needs to know about its environment."""

    model_config = ConfigDict(frozen=True)

    wavespeed_api_key: SecretStr | None = None
    vtrix_api_key: SecretStr | None = None
    wavespeed_base_url: str = DEFAULT_WAVESPEED_BASE_URL
    vtrix_base_url: str = DEFAULT_VTRIX_BASE_URL
    home: Path = Field(default_factory=_default_home)
    output_dir: Path | None = None
    allowed_dirs: tuple[Path, ...] = Field(default_factory=lambda: (Path.home(),))
    models: tuple[str, ...] | None = None
    sandbox: bool = False
    default_wait_seconds: float = Field(default=DEFAULT_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS)
    http_timeout: float = Field(default=30.0, gt=0)
    poll: PollPolicy = DEFAULT_POLL
    spend: SpendPolicy = SpendPolicy()
    http: HttpPolicy = HttpPolicy()
    # How long a generate call answered as an MCP task can be followed as one (its ttlMs); the
    # job's row, and get_result, outlive it.
    task_ttl_days: float = Field(default=30.0, gt=0)
    database_url: SecretStr | None = None
    public_url: str | None = None

    @property
    def webhook_url(self) -> str | None:
        """Where WaveSpeed calls back (``POST /webhooks/wavespeed`` under the public URL)."""
        return None if self.public_url is None else f"{self.public_url.rstrip('/')}{WEBHOOK_PATH}"

    @property
    def videos_dir(self) -> Path:
        return self.output_dir if self.output_dir is not None else self.home / "videos"

    @property
    def readable_dirs(self) -> tuple[Path, ...]:
        """Where local images may be read: ``allowed_dirs``, and the server's own folders, whose
        files (the demo's picture, saved posters and frames) it wrote itself."""
        return (*self.allowed_dirs, self.home, self.videos_dir)

    @property
    def database_path(self) -> Path:
        return self.home / "jobs.sqlite3"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> SecretStr | None:
            value = text(name)
            return SecretStr(value) if value else None

        values: dict[str, object] = {
            "wavespeed_api_key": secret("WAVESPEED_API_KEY"),
            "vtrix_api_key": secret("VTRIX_API_KEY"),
            "sandbox": _flag(text("WAN_MCP_SANDBOX"), "WAN_MCP_SANDBOX"),
        }
        for field, name in (
            ("wavespeed_base_url", "WAVESPEED_BASE_URL"),
            ("vtrix_base_url", "VTRIX_BASE_URL"),
        ):
            url = text(name)
            if url:
                if not url.startswith(("http://", "https://")):
                    raise ConfigError(
                        f"{name} must be an http(s) URL such as https://example.com; got {url!r}."
                    )
                values[field] = url.rstrip("/")
        if home := text("WAN_MCP_HOME"):
            values["home"] = Path(home).expanduser()
        if out := text("WAN_MCP_OUTPUT_DIR"):
            values["output_dir"] = Path(out).expanduser()
        if dirs := text("WAN_MCP_ALLOWED_DIRS"):
            values["allowed_dirs"] = tuple(Path(d).expanduser() for d in dirs.split(os.pathsep) if d.strip())
        poll: dict[str, object] = {}
        if interval := text("WAN_MCP_POLL_INTERVAL"):
            try:
                seconds = float(interval)
            except ValueError:
                raise ConfigError(
                    f"WAN_MCP_POLL_INTERVAL must be a number of seconds; got {interval!r}."
                ) from None
            # A fixed interval instead of the adaptive schedule.
            poll.update(adaptive=False, interval=seconds, max_interval=max(seconds, 10.0))
        if (rate := text("WAN_MCP_PROVIDER_RATE")) is not None:
            per_second = _amount(rate, "WAN_MCP_PROVIDER_RATE")
            poll["provider_rate"] = per_second if per_second > 0 else None
        if (lease := text("WAN_MCP_LEASE_SECONDS")) is not None:
            seconds = _amount(lease, "WAN_MCP_LEASE_SECONDS")
            if not 0.5 <= seconds <= 15:
                raise ConfigError(f"WAN_MCP_LEASE_SECONDS must be from 0.5 to 15 seconds; got {lease!r}.")
            poll["lease_seconds"] = seconds
        if poll:
            values["poll"] = PollPolicy.model_validate({**DEFAULT_POLL.model_dump(), **poll})
        spend: dict[str, float] = {}
        for field, name in (
            ("max_job_usd", "WAN_MCP_MAX_JOB_USD"),
            ("budget_usd", "WAN_MCP_BUDGET_USD"),
            ("confirm_above_usd", "WAN_MCP_CONFIRM_ABOVE_USD"),
            ("dedupe_hours", "WAN_MCP_DEDUPE_HOURS"),
        ):
            if (raw := text(name)) is not None:
                spend[field] = _amount(raw, name)
        if (period := text("WAN_MCP_BUDGET_PERIOD")) is not None:
            spend["budget_period_hours"] = _period_hours(period)
        if spend:
            values["spend"] = SpendPolicy.model_validate(spend)
        http: dict[str, object] = {}
        if token := secret("WAN_MCP_HTTP_TOKEN"):
            http["token"] = token
        for field, name in (
            ("allowed_hosts", "WAN_MCP_HTTP_ALLOWED_HOSTS"),
            ("allowed_origins", "WAN_MCP_HTTP_ALLOWED_ORIGINS"),
        ):
            if raw := text(name):
                http[field] = tuple(part.strip() for part in raw.split(",") if part.strip())
        if database := text("WAN_MCP_DATABASE_URL"):
            if not database.startswith(("postgresql://", "postgres://")):
                raise ConfigError(
                    "WAN_MCP_DATABASE_URL must be a PostgreSQL URL such as "
                    "postgresql://user:password@host:5432/dbname; unset it to keep the journal in SQLite."
                )
            values["database_url"] = SecretStr(database)
        if public := text("WAN_MCP_PUBLIC_URL"):
            if not public.startswith(("http://", "https://")):
                raise ConfigError(
                    "WAN_MCP_PUBLIC_URL must be the http(s) URL at which providers reach this server; "
                    f"got {public!r}."
                )
            values["public_url"] = public.rstrip("/")
        # A shared journal means replicas, and replicas mean stateless HTTP, unless told otherwise.
        stateless = text("WAN_MCP_HTTP_STATELESS")
        if _flag(stateless, "WAN_MCP_HTTP_STATELESS") if stateless is not None else "database_url" in values:
            http["stateless"] = True
        if raw := text("WAN_MCP_REQUEST_STATE_KEYS"):
            keys = tuple(SecretStr(k.strip()) for k in raw.split(",") if k.strip())
            if any(len(k.get_secret_value().encode()) < 32 for k in keys):
                raise ConfigError(
                    "Each WAN_MCP_REQUEST_STATE_KEYS secret must be at least 32 characters "
                    "(e.g. the output of: openssl rand -hex 32)."
                )
            http["request_state_keys"] = keys
        if raw := text("WAN_MCP_HTTP_MAX_BODY_MB"):
            http["max_body_bytes"] = int(_amount(raw, "WAN_MCP_HTTP_MAX_BODY_MB") * 1024 * 1024)
        if http:
            values["http"] = HttpPolicy.model_validate(http)
        if models := text("WAN_MCP_MODELS"):
            values["models"] = tuple(m.strip() for m in models.split(",") if m.strip())
        return cls.model_validate(values)


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0; got {value!r}.")


def _amount(value: str, name: str) -> float:
    try:
        amount = float(value.removeprefix("$"))
    except ValueError:
        raise ConfigError(f"{name} must be a non-negative number such as 2.50; got {value!r}.") from None
    if amount < 0 or amount != amount:
        raise ConfigError(f"{name} must be a non-negative number such as 2.50; got {value!r}.")
    return amount


_PERIODS = {"hour": 1.0, "day": 24.0, "week": 24.0 * 7, "month": 24.0 * 30}


def _period_hours(value: str) -> float:
    """``day``/``week``/``month``/``hour``, or a number of hours or days: ``12h``, ``7d``."""
    lowered = value.strip().lower()
    if lowered in _PERIODS:
        return _PERIODS[lowered]
    unit = {"h": 1.0, "d": 24.0}.get(lowered[-1:])
    try:
        hours = float(lowered[:-1]) * unit if unit else float(lowered)
    except ValueError:
        hours = -1.0
    if hours <= 0:
        raise ConfigError(
            f"WAN_MCP_BUDGET_PERIOD must be day, week, month, or a length such as 12h or 7d; got {value!r}."
        )
    return hours
