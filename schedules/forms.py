"""The schedule form of the schedules page and the admin: its clean() is service.validate, the
one validation of a schedule, so both refuse the same things with the same messages."""

from __future__ import annotations

import json
import zoneinfo
from typing import Any

from django import forms

from orchestration.workflows import registry
from reviews import access
from schedules import input_template, service
from schedules.models import Schedule


def _placeholders_help() -> str:
    return (
        "A JSON object; strings may use "
        + ", ".join(f"{{{{{n}}}}}" for n in input_template.NAMES)
        + ", resolved in the schedule's time zone for the occurrence being run."
    )


class ScheduleForm(forms.ModelForm):
    workflow_name = forms.ChoiceField(label="Workflow")
    timezone = forms.CharField(
        label="Time zone",
        initial="UTC",
        help_text="An IANA name, e.g. Australia/Sydney.",
        widget=forms.TextInput(attrs={"list": "timezones"}),
    )
    cron = forms.CharField(
        label="Cron expression",
        help_text="minute hour day-of-month month day-of-week, e.g. 30 6 * * * (06:30 daily).",
    )
    input_template = forms.CharField(
        label="Input template",
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
        initial='{"date": "{{yesterday}}"}',
        required=False,
    )
    owner = forms.ModelChoiceField(
        queryset=access.users_who_may_own_schedules(),
        help_text="Runs are started as this user: their budgets, limits and approvals apply.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled (uncheck to pause)")

    class Meta:
        model = Schedule
        fields = ["name", "workflow_name", "cron", "timezone", "input_template", "owner", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workflow_name"].choices = [
            (w.name, w.name) for w in sorted(registry.all_workflows(), key=lambda w: w.name)
        ]
        self.fields["input_template"].help_text = _placeholders_help()
        if self.instance.pk and not self.is_bound:
            self.initial["input_template"] = json.dumps(self.instance.input_template, indent=1)
        self.cleaned: service.Cleaned | None = None

    def clean_input_template(self) -> str:
        return self.cleaned_data.get("input_template") or ""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.cleaned = service.validate(
                {**data, "owner": data.get("owner")},
                instance=self.instance if self.instance.pk else None,
            )
        except service.ScheduleInvalid as exc:
            for field, message in exc.errors.items():
                name = field.split("/", 1)[0]
                text = message if name == field else f"{field.split('/', 1)[1]}: {message}"
                self.add_error(name if name in self.fields else None, text)
        return data

    def validate_unique(self) -> None:
        """service.validate checks the name (one message, not two)."""

    def as_data(self) -> dict[str, Any]:
        """The submitted values as service.create/update take them."""
        return {**self.cleaned_data}

    @staticmethod
    def time_zones() -> list[str]:
        return sorted(zoneinfo.available_timezones())
