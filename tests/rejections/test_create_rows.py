"""The rows one create writes: the rejection, its reflection and seven steps, the event
and its outbox job, numbered on the owner's change counter like any other change."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.db import open_session
from api.models import DomainEvent, Job, Reflection, ReflectionStep, Rejection, User
from api.reflections.steps import STEP_ORDER
from api.rejections.schemas import RejectionCreate, RejectionUpdate
from api.rejections.service import create_rejection, update_rejection
from tests.factories import make_rejection, make_user, rejection_body


def test_a_create_writes_the_rejection_reflection_steps_event_and_job(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    first = make_rejection(user)
    second = make_rejection(user, company="Globex")

    counter = db.exec(select(User.sync_seq).where(User.id == user.id)).one()
    numbers = []
    for created in (first, second):
        rejection = db.exec(select(Rejection).where(Rejection.id == created["id"])).one()
        reflection = db.exec(
            select(Reflection).where(Reflection.rejection_id == created["id"])
        ).one()
        assert (rejection.user_id, reflection.user_id) == (user.id, user.id)
        assert (rejection.version, reflection.version) == (1, 1)
        assert rejection.updated_at >= rejection.created_at
        assert reflection.completed_at is None and reflection.deleted_at is None
        # The reflection's change comes right after its rejection's.
        assert reflection.sync_seq == rejection.sync_seq + 1
        numbers += [rejection.sync_seq, reflection.sync_seq]

        steps = db.exec(
            select(ReflectionStep)
            .where(ReflectionStep.reflection_id == reflection.id)
            .order_by(col(ReflectionStep.order))
        ).all()
        assert [(step.key, step.order) for step in steps] == [
            (key.value, position) for position, key in enumerate(STEP_ORDER, start=1)
        ]
        assert {(step.status, str(step.content), step.user_id) for step in steps} == {
            ("not_started", "{}", user.id)
        }
        assert len({step.id for step in steps}) == 7

        event = db.exec(select(DomainEvent).where(DomainEvent.subject_id == created["id"])).one()
        assert (event.type, event.user_id) == ("rejection.created", user.id)
        jobs = db.exec(select(Job).where(Job.user_id == user.id)).all()
        [job] = [job for job in jobs if job.payload.get("event_id") == event.id]
        assert (job.kind, job.status, job.user_id) == ("webhooks.fan_out", "pending", user.id)
        assert (job.attempts, job.max_attempts, job.dedupe_key) == (0, 10, None)
        assert job.payload == {"event_id": event.id}

    # Four changes, four consecutive numbers, the last of them the owner's counter.
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    assert counter == numbers[-1]


def test_a_rejection_changed_in_its_creating_transaction_is_version_2(
    client: TestClient, engine: Engine, db: Session
) -> None:
    user = make_user(client)
    with open_session(engine) as session:
        owner = session.get_one(User, user.id)
        rejection = create_rejection(
            session=session, owner=owner, data=RejectionCreate.model_validate(rejection_body())
        )
        # The created object is in the session like a loaded one: a change is flushed as
        # an UPDATE with the next version and number, and a query finds that object.
        update_rejection(
            session=session,
            owner=owner,
            rejection=rejection,
            data=RejectionUpdate(company="Initech"),
        )
        assert session.exec(select(Rejection).where(Rejection.id == rejection.id)).one() is (
            rejection
        )
        session.commit()

    stored = db.exec(select(Rejection).where(Rejection.id == rejection.id)).one()
    reflection = db.exec(select(Reflection).where(Reflection.rejection_id == rejection.id)).one()
    assert (stored.company, stored.version) == ("Initech", 2)
    assert stored.sync_seq == reflection.sync_seq + 1
    events = db.exec(select(DomainEvent.type).where(DomainEvent.subject_id == rejection.id)).all()
    assert sorted(events) == ["rejection.created", "rejection.updated"]
