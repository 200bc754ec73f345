"""Realistic data, written through Rebound's own code.

- Accounts and rejections go through the services (`api.auth.service.register_user`,
  `api.rejections.service.create_rejection`, which also makes the reflection with its
  seven steps and the outbox rows), committed in batches like a busy day of requests.
- Reflection steps go through `api.reflections.service.write_step`, as the PUT route calls
  it (or through that route when the service is not in this shape).
- Feedback requests and action plans go through the HTTP contract of the spec, in process
  (`fastapi.testclient.TestClient` on `api.main.create_app`): their paths are fixed by the
  spec while their internals are still being written, and each kind is skipped, with a
  note, while its route is not there yet.
- The scale table (`bulk_scale`) is the one exception: 1,000,000 rejections across
  10,000 accounts are written with one bulk INSERT per batch of rows that the real models
  built (`User`, `Profile`, `Rejection.model_validate` of a `RejectionCreate`), with the
  bookkeeping the flush hook would have set (version 1, the owner's sync numbers,
  updated_at = created_at). The rows are the ones the service would write; their
  reflections are left out (the list endpoints never read them, and 8,000,000 step rows
  would not fit the time of a run on this machine).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, col, select

from api.auth.schemas import RegisterRequest
from api.auth.service import register_user
from api.config import Settings
from api.db import make_engine, new_id, open_session, utcnow
from api.http.pagination import encode_cursor
from api.models import Profile, Rejection, User
from api.rejections.schemas import RejectionCreate
from api.rejections.service import create_rejection
from api.security import create_access_token, hash_password

BENCH_SECRET = "bench-only-secret-key-0123456789abcdef-not-for-deploy"
PASSWORD = "bench passphrase 1"

COMPANIES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Logistics",
    "Hooli",
    "Pied Piper",
    "Vandelay Imports",
    "Soylent",
    "Tyrell Systems",
    "Cyberdyne",
    "Wonka Foods",
    "Oceanic Air",
    "Blue Sun",
    "Monarch Labs",
    "Nakatomi Trading",
    "Aperture Science",
    "Black Mesa",
    "Massive Dynamic",
]
ROLES = [
    "Backend Engineer",
    "Data Analyst",
    "Product Manager",
    "Site Reliability Engineer",
    "UX Designer",
    "Frontend Developer",
    "Machine Learning Engineer",
    "Engineering Manager",
    "QA Engineer",
    "Technical Writer",
]
CITIES = ["London", "Berlin", "Remote", "Lisbon", "Paris", "Amsterdam", "Dublin", None]
STAGES = ["applied", "screen", "phone", "technical", "onsite", "final", "offer"]
STAGE_WEIGHTS = [30, 20, 15, 15, 10, 7, 3]
REASONS = [
    "skills_gap",
    "other_candidate",
    "culture_fit",
    "compensation",
    "role_closed",
    "logistics",
    "withdrew",
    "no_reason_given",
    "other",
]
REASON_WEIGHTS = [20, 25, 5, 5, 8, 3, 4, 25, 5]
CHANNELS = ["email", "phone", "portal", "in_person", "ghosted"]
TAGS = ["remote", "startup", "fintech", "referral", "dream-job", "contract", "senior", "python"]
SKILLS = [
    "system design",
    "SQL",
    "communication",
    "Python",
    "leadership",
    "algorithms",
    "stakeholder management",
    "testing",
    "Kubernetes",
    "public speaking",
]
EMOTIONS = ["disappointed", "frustrated", "sad", "anxious", "confused", "relieved", "hopeful"]
NOTES = [
    "The hiring manager was friendly; the take-home ran long.",
    "Panel asked a lot about scaling; I should practise that.",
    "Recruiter said they went with an internal candidate.",
    "Never heard back after the onsite, chased twice.",
    "Good conversation about the team, salary band was lower than hoped.",
]


def bench_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": BENCH_SECRET,
        "embedded_worker": False,
        "rate_limit": "100000000/minute",
        "log_level": "WARNING",
        "log_json": True,
        "access_token_ttl": timedelta(hours=12),
        "email_daily_cap_per_user": 1_000_000,
        "email_weekly_cap_per_recipient": 1_000_000,
        "base_url": "http://127.0.0.1:9",
    }
    values.update(overrides)
    return Settings(**values)


def server_env(settings: Settings) -> dict[str, str]:
    """The REBOUND_* variables that make a `rebound serve`/`worker` use these settings."""
    return {
        "REBOUND_DATABASE_URL": settings.database_url,
        "REBOUND_SECRET_KEY": settings.secret_key,
        "REBOUND_EMBEDDED_WORKER": "false",
        "REBOUND_RATE_LIMIT": settings.rate_limit,
        "REBOUND_LOG_LEVEL": settings.log_level,
        "REBOUND_EMAIL_DAILY_CAP_PER_USER": str(settings.email_daily_cap_per_user),
        "REBOUND_EMAIL_WEEKLY_CAP_PER_RECIPIENT": str(settings.email_weekly_cap_per_recipient),
        "REBOUND_BASE_URL": settings.base_url,
    }


def access_token(settings: Settings, user: User) -> str:
    token, _ = create_access_token(settings, user_id=user.id, session_version=user.session_version)
    return token


# --- databases -------------------------------------------------------------------------


def create_postgres_database(server_url: str) -> str:
    """A fresh, empty database on the server `server_url` names; returns its URL."""
    from sqlalchemy import create_engine

    base = make_url(server_url)
    name = f"rebound_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine

    target = make_url(url)
    if not (target.database or "").startswith("rebound_bench_"):
        raise ValueError(f"refusing to drop {target.database!r}: not a benchmark database")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- accounts and rejections, through the services ------------------------------------


def rejection_fields(rng: random.Random, index: int, today: date) -> dict[str, Any]:
    rejected_on = today - timedelta(days=rng.randrange(0, 730))
    fields: dict[str, Any] = {
        "company": rng.choice(COMPANIES),
        "role_title": rng.choice(ROLES),
        "rejected_on": rejected_on.isoformat(),
        "applied_on": (rejected_on - timedelta(days=rng.randrange(3, 60))).isoformat(),
        "stage": rng.choices(STAGES, STAGE_WEIGHTS)[0],
        "decided_by": rng.choices(["employer", "candidate", "unknown"], [85, 10, 5])[0],
        "reason_code": rng.choices(REASONS, REASON_WEIGHTS)[0],
        "channel": rng.choice(CHANNELS),
        "tags": rng.sample(TAGS, rng.randrange(0, 4)),
        "emotional_impact": rng.randrange(1, 6),
    }
    location = rng.choice(CITIES)
    if location:
        fields["location"] = location
    if rng.random() < 0.6:
        fields["notes"] = rng.choice(NOTES)
    if rng.random() < 0.4:
        fields["reason_text"] = "They felt another candidate had more hands-on experience."
    if rng.random() < 0.5:
        fields["contact_name"] = "Sam Recruiter"
        fields["contact_email"] = f"talent{index}@example.com"
    if rng.random() < 0.5:
        fields["job_url"] = f"https://jobs.example.com/openings/{index}"
    return fields


def register(session: Session, email: str, *, timezone: str = "UTC") -> User:
    return register_user(
        session=session,
        data=RegisterRequest(
            email=email, password=PASSWORD, display_name=email.split("@")[0], timezone=timezone
        ),
    )


def create_users(engine: Engine, emails: list[str]) -> list[User]:
    users = []
    session = open_session(engine)
    try:
        for email in emails:
            users.append(register(session, email))
        session.commit()
    finally:
        session.close()
    return users


def create_rejections(
    engine: Engine, owner: User, count: int, *, seed: int, batch: int = 100
) -> list[str]:
    """`count` rejections through the service, committed `batch` at a time; their ids."""
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    ids: list[str] = []
    done = 0
    while done < count:
        session = open_session(engine)
        try:
            for index in range(done, min(count, done + batch)):
                data = RejectionCreate.model_validate(rejection_fields(rng, index, today))
                ids.append(create_rejection(session=session, owner=owner, data=data).id)
            session.commit()
        finally:
            session.close()
        done = min(count, done + batch)
    return ids


def cursor_after(engine: Engine, owner: User, rows: int) -> str:
    """The cursor the API gives after `rows` of the owner's list (newest first)."""
    with Session(engine) as session:
        ids = session.exec(
            select(Rejection.id)
            .where(Rejection.user_id == owner.id, col(Rejection.deleted_at).is_(None))
            .order_by(col(Rejection.id).desc())
            .limit(rows)
        ).all()
    return encode_cursor(ids[-1])


# --- the rest of a user's data, through the HTTP contract in process --------------------


@dataclass
class ExtrasReport:
    counts: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    def note(self) -> str:
        parts = [f"{name}={count}" for name, count in self.counts.items()]
        parts += [f"{name}: {why}" for name, why in self.pending.items()]
        return "; ".join(parts)


class ContractWriter:
    """Calls the API in process; a kind whose route is missing is marked pending once."""

    def __init__(self, client: Any, headers: dict[str, str], report: ExtrasReport) -> None:
        self.client = client
        self.headers = headers
        self.report = report

    def call(self, kind: str, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
        if kind in self.report.pending:
            return None
        response = self.client.request(method, path, json=body, headers=self.headers)
        if response.status_code in (404, 405) and self.report.counts.get(kind, 0) == 0:
            self.report.pending[kind] = (
                f"pending ({method} {path.split('/')[2]}… answered {response.status_code})"
            )
            return None
        if response.status_code >= 400:
            self.report.pending[kind] = (
                f"stopped: {method} {path} answered {response.status_code}: {response.text[:300]}"
            )
            return None
        self.report.counts[kind] = self.report.counts.get(kind, 0) + 1
        if not response.content:
            return {}
        data: dict[str, Any] = response.json()
        return data


def _steps_for(rng: random.Random, complete: bool) -> list[tuple[str, dict[str, Any]]]:
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "emotions",
            {
                "status": "done",
                "content": {
                    "emotions": rng.sample(EMOTIONS, rng.randrange(1, 3)),
                    "intensity": rng.randrange(1, 6),
                    "journal": "Wrote down how the call went and what I felt afterwards.",
                    "coping": ["journaling"],
                },
            },
        ),
        (
            "strengths_weaknesses",
            {
                "status": "done",
                "content": {
                    "strengths": [{"skill": rng.choice(SKILLS), "note": "went well"}],
                    "weaknesses": [
                        {"skill": skill, "note": "needs work"}
                        for skill in rng.sample(SKILLS, rng.randrange(1, 3))
                    ],
                },
            },
        ),
        ("attitude", {"status": "done", "content": {"confidence": rng.randrange(1, 6)}}),
    ]
    if complete:
        steps += [
            ("feedback", {"status": "skipped", "content": {}}),
            ("goals_values", {"status": "done", "content": {"role_fit": "partial"}}),
            (
                "mistakes",
                {
                    "status": "done",
                    "content": {
                        "mistakes": [
                            {
                                "phase": "interview",
                                "what": "Rushed the design question",
                                "lesson": "Ask about scale before drawing boxes",
                            }
                        ]
                    },
                },
            ),
            ("action", {"status": "done", "content": {"commitment": "Two mock interviews"}}),
        ]
    return steps


def _steps_through_service(
    engine: Engine,
    owner: User,
    rejection_ids: list[str],
    rng: random.Random,
    report: ExtrasReport,
    *,
    batch: int = 50,
) -> bool:
    """Reflection steps via `api.reflections.service.write_step`, as the PUT route calls it.

    False (nothing written) when the service is not in this shape; the caller then goes
    through HTTP.
    """
    try:
        from api.reflections.schemas import StepWrite
        from api.reflections.service import get_reflection, write_step
        from api.reflections.steps import StepKey
    except ImportError:
        return False
    for start in range(0, len(rejection_ids), batch):
        session = open_session(engine)
        try:
            for offset, rejection_id in enumerate(rejection_ids[start : start + batch]):
                rejection = session.get(Rejection, rejection_id)
                reflection = get_reflection(session=session, rejection=rejection, lock=True)
                for key, body in _steps_for(rng, complete=(start + offset) % 2 == 0):
                    reflection = write_step(
                        session=session,
                        owner=owner,
                        reflection=reflection,
                        key=StepKey(key),
                        data=StepWrite.model_validate(body),
                    )
                    report.counts["reflection_steps"] = report.counts.get("reflection_steps", 0) + 1
            session.commit()
        except TypeError:
            session.rollback()
            if start == 0:
                return False
            raise
        finally:
            session.close()
    return True


def seed_extras(
    settings: Settings,
    owner: User,
    rejection_ids: list[str],
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> ExtrasReport:
    """Reflection steps, feedback requests (with answers) and action plans for `owner`."""
    from fastapi.testclient import TestClient

    from api.logging import configure_logging
    from api.main import create_app

    configure_logging(settings)  # WARNING: no line per request of the seeding
    rng = random.Random(seed)
    report = ExtrasReport()
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {access_token(settings, owner)}"}
    started = time.monotonic()
    steps_done = _steps_through_service(app.state.engine, owner, rejection_ids, rng, report)
    if steps_done and progress:
        progress(f"reflection steps written: {report.counts.get('reflection_steps', 0)}")
    with TestClient(app) as client:
        writer = ContractWriter(client, headers, report)
        for position, rejection_id in enumerate(rejection_ids):
            for key, body in [] if steps_done else _steps_for(rng, complete=position % 2 == 0):
                writer.call(
                    "reflection_steps",
                    "PUT",
                    f"/v1/rejections/{rejection_id}/reflection/steps/{key}",
                    body,
                )
            if position % 3 == 0:
                request = writer.call(
                    "feedback_requests",
                    "POST",
                    f"/v1/rejections/{rejection_id}/feedback-requests",
                    {
                        "recipient_name": "Hiring Manager",
                        "recipient_email": f"manager{position}@example.com",
                        "channel": "other",
                    },
                )
                if request and "id" in request:
                    writer.call(
                        "feedback_sent", "POST", f"/v1/feedback-requests/{request['id']}/send"
                    )
                    if position % 2 == 0:
                        writer.call(
                            "feedback_responses",
                            "POST",
                            f"/v1/feedback-requests/{request['id']}/responses",
                            {
                                "outcome": rng.choice(["responded", "declined"]),
                                "text": "Strong on fundamentals; go deeper on system design.",
                            },
                        )
            if progress and position % 250 == 249:
                progress(f"extras {position + 1}/{len(rejection_ids)}")
        for plan_index in range(20):
            linked = rejection_ids[plan_index * 50 : plan_index * 50 + 5]
            plan = writer.call(
                "action_plans",
                "POST",
                "/v1/action-plans",
                {
                    "title": f"Close the gap #{plan_index + 1}",
                    "goal": "Be ready for senior interviews",
                    "rejection_ids": linked,
                    "skills": rng.sample(SKILLS, 2),
                },
            )
            if not plan or "id" not in plan:
                continue
            for item_index in range(5):
                due = datetime.now(UTC).date() + timedelta(days=rng.randrange(-20, 60))
                item = writer.call(
                    "action_items",
                    "POST",
                    f"/v1/action-plans/{plan['id']}/items",
                    {
                        "title": f"Practice task {item_index + 1}",
                        "kind": rng.choice(["upskill", "practice", "networking", "wellbeing"]),
                        "due_on": due.isoformat(),
                    },
                )
                if item and "id" in item and item_index % 3 == 0:
                    writer.call(
                        "action_items_done",
                        "PATCH",
                        f"/v1/action-items/{item['id']}",
                        {"status": "done"},
                    )
    report.counts["seconds"] = round(time.monotonic() - started)
    return report


# --- the scale table: bulk rows built by the real models --------------------------------


class _BulkTable:
    """Rows of one table as tuples of already bind-processed values.

    Each value passes through the bind processor SQLAlchemy itself applies for the
    column's type (UTC datetimes, dates, JSON), so the stored rows equal an ORM insert's.
    A template row (built by the real model) is processed once; rows made from it only
    swap the columns that differ, which keeps a million rows within a few minutes here.
    """

    def __init__(self, table: Table, dialect: Any) -> None:
        self.table = table
        self.dialect = dialect
        self.names = [column.name for column in table.columns]
        self.position = {name: index for index, name in enumerate(self.names)}
        self.processors = {
            column.name: column.type.dialect_impl(dialect).bind_processor(dialect)
            for column in table.columns
        }

    def value(self, name: str, value: Any) -> Any:
        process = self.processors[name]
        return value if process is None else process(value)

    def template(self, obj: Any) -> list[Any]:
        return [self.value(name, getattr(obj, name)) for name in self.names]

    def insert(self, connection: Connection, rows: list[list[Any]] | list[tuple[Any, ...]]) -> None:
        """COPY on PostgreSQL, executemany on SQLite."""
        quoted = ", ".join(f'"{name}"' for name in self.names)
        if self.dialect.name == "postgresql":
            raw = connection.connection.driver_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(  # type: ignore[union-attr]
                    f'COPY "{self.table.name}" ({quoted}) FROM STDIN'
                ) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join("?" for _ in self.names)
        # A large page cache for this loading connection only: the indexes on random
        # UUIDs are written all over; the server's own connections are not affected.
        connection.exec_driver_sql("PRAGMA cache_size = -262144")
        connection.exec_driver_sql(
            f'INSERT INTO "{self.table.name}" ({quoted}) VALUES ({placeholders})',
            [tuple(row) for row in rows],
        )


def bulk_scale(
    engine: Engine,
    *,
    users: int,
    rows: int,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`users` accounts with `rows` rejections between them, interleaved in time."""
    started = time.monotonic()
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    dialect = engine.dialect
    per_user = rows // users
    run = uuid.uuid4().hex[:6]
    user_table = _BulkTable(User.__table__, dialect)  # type: ignore[attr-defined]
    profile_table = _BulkTable(Profile.__table__, dialect)  # type: ignore[attr-defined]
    rejection_table = _BulkTable(Rejection.__table__, dialect)  # type: ignore[attr-defined]

    # One account and its profile as register_user makes them (one Argon2 hash for all).
    user = User(
        email="template@bench.example.com",
        password_hash=hash_password(PASSWORD),
        display_name="scale",
        timezone="UTC",
    )
    user.sync_seq = 1 + per_user  # the profile, then each rejection
    profile = Profile(user_id=user.id)
    profile.version, profile.sync_seq, profile.updated_at = 1, 1, profile.created_at
    user_template, profile_template = user_table.template(user), profile_table.template(profile)
    u_id, u_email, u_name = (user_table.position[n] for n in ("id", "email", "display_name"))
    p_id, p_user = profile_table.position["id"], profile_table.position["user_id"]
    user_rows, profile_rows, user_ids = [], [], []
    for index in range(users):
        row = list(user_template)
        row[u_id], row[u_email], row[u_name] = (
            new_id(),
            f"scale{index}-{run}@bench.example.com",
            f"scale{index}",
        )
        user_rows.append(row)
        user_ids.append(row[u_id])
        profile_row = list(profile_template)
        profile_row[p_id], profile_row[p_user] = new_id(), row[u_id]
        profile_rows.append(profile_row)

    templates = []
    for index in range(64):
        data = RejectionCreate.model_validate(rejection_fields(rng, index, today))
        rejection = Rejection.model_validate(
            data.model_dump(mode="json", exclude={"rejected_on"}),
            update={"user_id": user_ids[0], "rejected_on": data.rejected_on},
        )
        rejection.version = 1
        templates.append(rejection_table.template(rejection))
    r_pos = rejection_table.position
    r_id, r_user, r_seq = r_pos["id"], r_pos["user_id"], r_pos["sync_seq"]
    r_created, r_updated = r_pos["created_at"], r_pos["updated_at"]

    with engine.begin() as connection:
        user_table.insert(connection, user_rows)
        profile_table.insert(connection, profile_rows)
    written = 0
    batch: list[list[Any]] = []
    # Round-robin over the users, as rows arrive in a real deployment.
    for round_index in range(per_user):
        for position, user_id in enumerate(user_ids):
            if position % 1000 == 0:
                stamp = rejection_table.value("created_at", utcnow())
            row = list(templates[(round_index * 7 + position) % len(templates)])
            row[r_id], row[r_user], row[r_seq] = new_id(), user_id, 2 + round_index
            row[r_created] = row[r_updated] = stamp
            batch.append(row)
            if len(batch) == 20_000:
                with engine.begin() as connection:
                    rejection_table.insert(connection, batch)
                written += len(batch)
                batch = []
                if progress and written % 200_000 == 0:
                    progress(f"scale rows {written}/{per_user * users}")
    if batch:
        with engine.begin() as connection:
            rejection_table.insert(connection, batch)
        written += len(batch)
    if dialect.name == "postgresql":
        # What autovacuum would do after such a load; SQLite is left as the app leaves it
        # (nothing there runs ANALYZE), so its planner sees what a deployment's would.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    return {"users": users, "rows": written, "seconds": round(time.monotonic() - started, 1)}


def count_rejections(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM rejections")).scalar_one())


__all__ = [
    "BENCH_SECRET",
    "ExtrasReport",
    "access_token",
    "bench_settings",
    "bulk_scale",
    "count_rejections",
    "create_postgres_database",
    "create_rejections",
    "create_users",
    "cursor_after",
    "drop_postgres_database",
    "make_engine",
    "seed_extras",
    "server_env",
]
