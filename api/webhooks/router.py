"""Webhook subscriptions of an organisation, managed by its owners, and their delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from api.auth.dependencies import SettingsDep
from api.db import SessionDep
from api.http.etag import check_if_match, set_etag
from api.http.pagination import Cursor, Limit, Page
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.models.webhook import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription
from api.orgs.dependencies import OrgActor, OrgOwner
from api.webhooks import service
from api.webhooks.schemas import (
    AttemptRead,
    DeliveryRead,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(
    prefix="/v1/orgs/{org_id}/webhooks", tags=["webhooks"], route_class=TransactionalRoute
)

HookId = Annotated[str, Path(max_length=36)]
DeliveryId = Annotated[str, Path(max_length=36)]


def _subscription(hook_id: HookId, owner: OrgOwner, session: SessionDep) -> WebhookSubscription:
    return service.get_subscription(session=session, org=owner.org, hook_id=hook_id)


def _subscription_for_write(
    hook_id: HookId, request: Request, owner: OrgOwner, session: SessionDep
) -> WebhookSubscription:
    subscription = service.get_subscription(
        session=session, org=owner.org, hook_id=hook_id, lock=True
    )
    check_if_match(request, subscription)
    return subscription


Subscription = Annotated[WebhookSubscription, Depends(_subscription)]
SubscriptionForWrite = Annotated[WebhookSubscription, Depends(_subscription_for_write)]


def webhook_read(subscription: WebhookSubscription) -> WebhookRead:
    return WebhookRead.model_validate(subscription, from_attributes=True)


def with_secret(subscription: WebhookSubscription) -> WebhookWithSecret:
    return WebhookWithSecret.model_validate(subscription, from_attributes=True)


def delivery_read(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        webhook_id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_type=delivery.event_type,
        status=DeliveryStatus(delivery.status),
        attempts=[AttemptRead.model_validate(a, from_attributes=True) for a in attempts],
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
    )


def _actor_user_id(owner: OrgActor) -> str | None:
    return owner.user.id if owner.user is not None else None


@router.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 403, 404, 409, 422))
def create_webhook(
    data: WebhookCreate,
    owner: OrgOwner,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> WebhookWithSecret:
    """Subscribe a URL to events; the signing secret is shown only in this response."""
    subscription = service.create_subscription(
        session=session,
        org=owner.org,
        data=data,
        settings=settings,
        created_by=_actor_user_id(owner),
    )
    set_etag(response, subscription)
    response.headers["Location"] = f"/v1/orgs/{owner.org.id}/webhooks/{subscription.id}"
    return with_secret(subscription)


@router.get("", responses=problems(401, 403, 404, 422))
def list_webhooks(
    owner: OrgOwner, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[WebhookRead]:
    """The organisation's webhook subscriptions, newest first."""
    rows, next_cursor = service.list_subscriptions(
        session=session, org=owner.org, limit=limit, cursor=cursor
    )
    return Page(items=[webhook_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/{hook_id}", responses=problems(401, 403, 404))
def read_webhook(subscription: Subscription, response: Response) -> WebhookRead:
    """One webhook subscription (without its secret)."""
    set_etag(response, subscription)
    return webhook_read(subscription)


@router.patch("/{hook_id}", responses=problems(401, 403, 404, 412, 422))
def update_webhook(
    data: WebhookUpdate,
    subscription: SubscriptionForWrite,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> WebhookRead:
    """Change the URL or the events, or switch the subscription off or back on."""
    subscription = service.update_subscription(
        session=session, subscription=subscription, data=data, settings=settings
    )
    set_etag(response, subscription)
    return webhook_read(subscription)


@router.delete(
    "/{hook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404, 412)
)
def delete_webhook(subscription: SubscriptionForWrite, session: SessionDep) -> Response:
    """Delete a subscription and its delivery log."""
    service.delete_subscription(session=session, subscription=subscription)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{hook_id}/rotate-secret", responses=problems(401, 403, 404, 412))
def rotate_webhook_secret(
    subscription: SubscriptionForWrite, session: SessionDep, response: Response
) -> WebhookWithSecret:
    """A new signing secret, shown only now; the old one also signs for 24 hours."""
    service.rotate_secret(session=session, subscription=subscription)
    set_etag(response, subscription)
    return with_secret(subscription)


@router.get("/{hook_id}/deliveries", responses=problems(401, 403, 404, 422))
def list_webhook_deliveries(
    subscription: Subscription,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: DeliveryStatus | None = None,
) -> Page[DeliveryRead]:
    """The subscription's delivery log, newest first, with every attempt."""
    rows, attempts, next_cursor = service.list_deliveries(
        session=session, subscription=subscription, limit=limit, cursor=cursor, status=status
    )
    return Page(
        items=[delivery_read(row, attempts.get(row.id, [])) for row in rows],
        next_cursor=next_cursor,
    )


@router.get("/{hook_id}/deliveries/{delivery_id}", responses=problems(401, 403, 404))
def read_webhook_delivery(
    delivery_id: DeliveryId, subscription: Subscription, session: SessionDep
) -> DeliveryRead:
    """One delivery and its attempts."""
    delivery = service.get_delivery(
        session=session, subscription=subscription, delivery_id=delivery_id
    )
    return delivery_read(delivery, service.attempts_of(session, [delivery.id])[delivery.id])


@router.post(
    "/{hook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(401, 403, 404, 409),
)
def redeliver_webhook(
    delivery_id: DeliveryId, subscription: Subscription, session: SessionDep
) -> DeliveryRead:
    """Send a delivery again now, with the same `webhook-id`."""
    delivery = service.get_delivery(
        session=session, subscription=subscription, delivery_id=delivery_id, lock=True
    )
    service.redeliver(session=session, subscription=subscription, delivery=delivery)
    return delivery_read(delivery, service.attempts_of(session, [delivery.id])[delivery.id])
