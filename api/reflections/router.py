"""A rejection's reflection: reading it, writing its steps, and the guide to them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.etag import check_if_match, set_etag
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.reflections import service
from api.reflections.guide import GUIDE, NEXT_STEP_RULE
from api.reflections.schemas import GuideStep, ReflectionGuide, ReflectionRead, StepWrite
from api.reflections.steps import STEP_ORDER, StepKey
from api.rejections.dependencies import OwnedRejection

router = APIRouter(prefix="/v1", tags=["reflections"], route_class=TransactionalRoute)


@router.get("/rejections/{rejection_id}/reflection", responses=problems(401, 404))
def read_reflection(
    rejection: OwnedRejection, session: SessionDep, response: Response
) -> ReflectionRead:
    """The rejection's reflection: its seven steps, progress and the suggested next step."""
    reflection = service.get_reflection(session=session, rejection=rejection)
    set_etag(response, reflection)
    return service.reflection_read(session=session, reflection=reflection)


@router.put(
    "/rejections/{rejection_id}/reflection/steps/{key}",
    responses=problems(401, 404, 412, 422),
)
def write_reflection_step(
    key: StepKey,
    data: StepWrite,
    rejection: OwnedRejection,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> ReflectionRead:
    """Write one step's status and content; `If-Match` takes the reflection's ETag."""
    reflection = service.get_reflection(session=session, rejection=rejection, lock=True)
    check_if_match(request, reflection)
    reflection = service.write_step(
        session=session, owner=user, reflection=reflection, key=key, data=data
    )
    set_etag(response, reflection)
    return service.reflection_read(session=session, reflection=reflection)


@router.get("/reflection-guide")
def read_reflection_guide() -> ReflectionGuide:
    """The seven reflection steps: what each is for, its prompts, and the next-step rule."""
    return ReflectionGuide(
        steps=[
            GuideStep(
                key=key,
                order=position,
                title=GUIDE[key].title,
                why_it_matters=GUIDE[key].why_it_matters,
                prompts=list(GUIDE[key].prompts),
                done_when=GUIDE[key].done_when,
            )
            for position, key in enumerate(STEP_ORDER, start=1)
        ],
        next_step_rule=NEXT_STEP_RULE,
    )
