"""The user's own account: reading and changing it, the profile, and erasure."""

from __future__ import annotations

from sqlmodel import Session, select

from api.accounts.schemas import ProfileRead, ProfileWrite, UserRead, UserUpdate
from api.auth.service import end_all_sessions, find_user_by_email
from api.errors import Conflict, Unauthorized
from api.models import Profile, User
from api.security import hash_password, verify_password


def user_read(user: User) -> UserRead:
    return UserRead.model_validate(user, from_attributes=True)


def update_user(*, session: Session, user: User, data: UserUpdate) -> User:
    """Apply the given fields; a new e-mail or password needs the current password."""
    changes = data.model_dump(exclude_unset=True, exclude={"password", "current_password"})
    if data.current_password is not None and not verify_password(
        data.current_password, user.password_hash
    ):
        raise Unauthorized("current_password is wrong.")
    if "email" in changes and changes["email"] is not None:
        email = changes["email"].strip().lower()
        other = find_user_by_email(session=session, email=email)
        if other is not None and other.id != user.id:
            raise Conflict("Another account uses this e-mail address.")
        changes["email"] = email
    for name, value in changes.items():
        if value is not None:
            setattr(user, name, value)
    if data.password is not None:
        user.password_hash = hash_password(data.password)
        end_all_sessions(session=session, user=user)
    user.version += 1
    session.add(user)
    return user


def delete_user(*, session: Session, user: User) -> None:
    """Erase the account; the database cascades to everything the user owns."""
    session.delete(user)


def get_profile(*, session: Session, user: User, lock: bool = False) -> Profile:
    statement = select(Profile).where(Profile.user_id == user.id)
    profile = session.exec(statement.with_for_update() if lock else statement).first()
    if profile is None:  # accounts made before profiles existed
        profile = Profile(user_id=user.id)
        session.add(profile)
        session.flush()
    return profile


def replace_profile(*, session: Session, profile: Profile, data: ProfileWrite) -> Profile:
    profile.goals = data.goals
    profile.values = [value.model_dump() for value in data.values]
    profile.target_roles = data.target_roles
    session.add(profile)
    return profile


def profile_read(profile: Profile) -> ProfileRead:
    return ProfileRead.model_validate(profile, from_attributes=True)
