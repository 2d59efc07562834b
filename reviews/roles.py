"""The roles as rows: the four groups of ``reviews.access.ROLES`` and their permissions.

``ensure_roles`` creates a missing group and adds the permissions a role lacks; it never
removes a permission or a member, so running it again changes nothing an administrator did on
purpose. It runs from the data migration ``reviews/0006_access_roles`` (so a fresh database has
the roles after ``migrate``, without ``seed_demo``) and after every ``migrate`` or ``flush``
(post_migrate), so a flushed database gets them back. ``assign`` gives a user a role (the
``assign_role`` command).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions

from reviews.access import DOMAIN_APPS, ROLES, Role


class RoleError(Exception):
    """The user or the role does not exist; nothing was changed."""


def _create_permission_rows(apps: Any, using: str) -> None:
    """Content types and permissions are otherwise created by post_migrate, i.e. after every
    migration has run: a data migration must create the ones it needs itself."""
    for label in ("auth", "contenttypes", *DOMAIN_APPS):
        try:
            app_config = apps.get_app_config(label)
        except LookupError:
            continue
        # Historical app configs have no models_module; create_permissions skips those.
        had = getattr(app_config, "models_module", None)
        app_config.models_module = had or True
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            app_config.models_module = had


def ensure_roles(
    apps: Any = global_apps,
    using: str = "default",
    *,
    roles: dict[str, Role] | None = None,
    strict: bool = True,
) -> list[str]:
    """Create each missing role group and add the permissions it lacks; returns the groups
    created. Works with the migration's historical ``apps`` as with the live registry.
    ``roles`` defaults to the living definition (``reviews.access.ROLES``); the migration
    passes its own frozen copy. ``strict=False`` (after a partial migrate) skips a permission
    whose model is not there yet."""
    _create_permission_rows(apps, using)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    created = []
    for name, role in (ROLES if roles is None else roles).items():
        wanted = []
        for full in role.permissions:
            app_label, codename = full.split(".")
            perm = (
                Permission.objects.using(using)
                .filter(content_type__app_label=app_label, codename=codename)
                .first()
            )
            if perm is None and not strict:
                continue
            if perm is None:
                raise RoleError(f"Permission {full} does not exist; is its app migrated?")
            wanted.append(perm)
        if role.views_everything:
            wanted += list(
                Permission.objects.using(using).filter(
                    content_type__app_label__in=DOMAIN_APPS, codename__startswith="view_"
                )
            )
        group, was_created = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*wanted)
        if was_created:
            created.append(name)
    return created


def ensure_roles_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver (reviews.apps): a flushed database gets its roles back."""
    ensure_roles(kwargs.get("apps") or global_apps, using=using, strict=False)


def assign(username: str, role: str, *, remove: bool = False) -> Any:
    """Give ``username`` the role (or take it away); RoleError when either is unknown."""
    Group = global_apps.get_model("auth", "Group")
    if role not in ROLES:
        raise RoleError(f"Unknown role {role!r}; the roles are: {', '.join(ROLES)}.")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise RoleError(f"No user named {username!r}.")
    group = Group.objects.filter(name=role).first()
    if group is None:
        raise RoleError(f"The group {role!r} is missing: run `python manage.py migrate`.")
    if remove:
        user.groups.remove(group)
    else:
        user.groups.add(group)
    return user
