"""Settings: environment variables with the prefix REBOUND_ (and a .env file)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-deploy"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REBOUND_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./var/rebound.db"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    # Keys that signed tokens still in circulation; tokens they signed stay valid.
    previous_secret_keys: list[str] = Field(default_factory=list)
    base_url: str = "http://127.0.0.1:8000"

    access_token_ttl: timedelta = timedelta(minutes=15)
    refresh_token_ttl: timedelta = timedelta(days=30)

    email_backend: Literal["console", "smtp"] = "console"
    smtp_url: str | None = None
    smtp_timeout: float = 10.0
    # Off only for a server with a self-signed certificate (tests, a local relay).
    smtp_tls_verify: bool = True
    email_from: str = "Rebound <no-reply@rebound.invalid>"
    email_daily_cap_per_user: int = 20
    email_weekly_cap_per_recipient: int = 5
    min_follow_up_interval: timedelta = timedelta(days=1)

    webhook_allow_private_targets: bool = False

    rate_limit: str = "600/minute"
    login_rate_limit: str = "10/15minutes"
    rate_limit_storage: str = "memory://"

    embedded_worker: bool = True
    worker_poll_interval: float = 1.0
    # Jobs claimed per round; a batch of e-mails is prepared and recorded in one
    # transaction each, so larger batches mean fewer round trips (a crash re-runs at most
    # one batch, once its lease has run out).
    worker_batch_size: int = 200
    # On SQLite `serve` migrates by itself; on PostgreSQL only when this is true.
    migrate_on_start: bool | None = None

    cors_origins: list[str] = Field(default_factory=list)
    docs_enabled: bool = True
    metrics_token: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _refuse_development_secret_outside_development(self) -> Settings:
        if self.env != "development" and (
            not self.secret_key or self.secret_key == DEVELOPMENT_SECRET_KEY
        ):
            raise ValueError(
                "REBOUND_SECRET_KEY must be set to a long random value outside "
                "development (for example: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        if self.env != "development" and len(self.secret_key) < 32:
            raise ValueError("REBOUND_SECRET_KEY must be at least 32 characters long")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is None:
            return self.is_sqlite
        return self.migrate_on_start


@lru_cache
def get_settings() -> Settings:
    return Settings()
