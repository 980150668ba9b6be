"""Pieces every REST API resource shares: permissions, model validation, safe deletes."""

import copy
from datetime import UTC

import django_filters
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import ProtectedError
from django_filters.fields import IsoDateTimeField, RangeField
from django_filters.widgets import DateRangeWidget
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from . import history

# Django's model permission each HTTP method needs (reads need "view", like the admin).
METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class StaffModelPermissions(permissions.BasePermission):
    """Staff only; each request needs the Django permission it acts on.

    By default that is ``<app>.<action>_<model>`` for the view's model and the
    HTTP method. A viewset may name other permissions per action in
    ``action_permissions`` (e.g. re-queueing needs ``conversions.requeue_postback``,
    not a change permission). Superusers pass. A refusal says which permission
    is missing, so an operator knows what to ask for.
    """

    message = "Staff only: this API is for the network's operators."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            return False
        needed = self.required(request, view)
        missing = [perm for perm in needed if not user.has_perm(perm)]
        if missing:
            self.message = (
                f"You may not {self.describe(request, view)}: "
                f"missing permission {', '.join(missing)}."
            )
            return False
        # Signed in by a token (after the middleware opened the context): name the user.
        history.attribute(user)
        return True

    @staticmethod
    def required(request, view) -> list[str]:
        action = getattr(view, "action", None)
        explicit = getattr(view, "action_permissions", {})
        if action in explicit:
            return list(explicit[action])
        model = view.queryset.model
        verb = METHOD_ACTIONS.get(request.method, "change")
        return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}"]

    @staticmethod
    def describe(request, view) -> str:
        action = getattr(view, "action", None) or request.method.lower()
        model = view.queryset.model._meta.verbose_name_plural
        return {
            "list": f"read {model}",
            "metadata": f"read {model}",
            "retrieve": f"read {model}",
            "create": f"create {model}",
            "update": f"change {model}",
            "partial_update": f"change {model}",
            "destroy": f"delete {model}",
        }.get(action, f"{action.replace('_', ' ')} {model}")


def _drf_errors(exc: DjangoValidationError) -> dict:
    """Django's error dict in DRF's shape (``__all__`` becomes ``non_field_errors``)."""
    if not hasattr(exc, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
        for field, messages in exc.message_dict.items()
    }


class ModelValidatingSerializer(serializers.ModelSerializer):
    """A ModelSerializer that also runs the model's own validation.

    DRF copies field validators but not model ``clean()``, check constraints or
    unique constraints with conditions or expressions; without this, a bad
    value would reach the database and come back as a 500. Here the would-be
    instance is built and ``full_clean()``-ed, and its errors become a 400 with
    field errors. Subclasses mirror check constraints as field errors in
    ``validate()`` first, so that a user sees which field is wrong.
    """

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        model = self.Meta.model
        instance = model() if self.instance is None else copy.copy(self.instance)
        for name, value in attrs.items():
            setattr(instance, name, value)
        try:
            instance.full_clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_drf_errors(exc)) from None
        return attrs


def same_offer(goal: models.Model | None, offer: models.Model | None) -> dict:
    """Field errors when a goal is given that is not the offer's."""
    if goal is None:
        return {}
    if offer is None:
        return {"goal": ["A goal needs its offer: set offer too."]}
    if goal.offer_id != offer.pk:
        return {"goal": [f"Goal {goal.pk} belongs to offer {goal.offer_id}, not {offer.pk}."]}
    return {}


class ProtectedDeleteMixin:
    """A delete that other rows still depend on answers 409 and says which, not 500."""

    def destroy(self, request, *args, **kwargs):
        instance = self.get_object()
        try:
            instance.delete()
        except ProtectedError as exc:
            kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
            return Response(
                {"detail": f"Cannot delete {instance}: {', '.join(kinds)} still refer to it."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC.

    PostgreSQL accepts UTC offsets up to 15:59 only, while ISO 8601 (and
    Python) allow up to 23:59: converting here keeps an odd but valid offset
    from reaching the database as a 500.
    """

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise DjangoValidationError(
                "Enter a date and time between years 1 and 9999.", code="invalid"
            ) from None


class UTCDateTimeRangeField(RangeField):
    widget = DateRangeWidget

    def __init__(self, *args, **kwargs):
        super().__init__((UTCDateTimeField(), UTCDateTimeField()), *args, **kwargs)


class DateTimeRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    """``<name>_after`` / ``<name>_before`` in ISO 8601, any UTC offset."""

    field_class = UTCDateTimeRangeField
