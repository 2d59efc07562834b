"""A start-run form built from the workflow's input schema."""

from __future__ import annotations

from typing import Any

from django import forms

from orchestration.untrusted import INT_MAX, INT_MIN, findings


class WorkflowInputForm(forms.Form):
    """One field per top-level property of the input schema."""

    def __init__(
        self, schema: dict[str, Any], *args: Any, initial_input: dict | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.schema = schema
        required = set(schema.get("required", []))
        for name, prop in (schema.get("properties") or {}).items():
            self.fields[name] = self._field(prop, name in required)
            if initial_input and name in initial_input:
                self.fields[name].initial = initial_input[name]

    @staticmethod
    def _field(prop: dict[str, Any], required: bool) -> forms.Field:
        label_help = {"required": required, "help_text": prop.get("description", "")}
        if "enum" in prop:
            return forms.ChoiceField(choices=[(v, v) for v in prop["enum"]], **label_help)
        kind = prop.get("type")
        if kind == "integer":
            # Stored and compared as 64-bit wherever it goes.
            return forms.IntegerField(min_value=INT_MIN, max_value=INT_MAX, **label_help)
        if kind == "number":
            return forms.DecimalField(**label_help)
        if kind == "boolean":
            return forms.BooleanField(required=False, help_text=label_help["help_text"])
        if prop.get("format") == "date":
            return forms.CharField(widget=forms.DateInput(attrs={"type": "date"}), **label_help)
        if (prop.get("maxLength") or 0) > 200:
            return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **label_help)
        return forms.CharField(**label_help)

    def clean(self) -> dict[str, Any]:
        """The limits every entry point shares (orchestration.untrusted), on the input as it
        would be sent: a number like 1e400 passes as a decimal but is infinite as JSON."""
        cleaned = super().clean()
        if not self.errors:
            for finding in findings(self.as_input()):
                name = finding.path.split("/")[1] if finding.path.count("/") else ""
                self.add_error(name if name in self.fields else None, finding.message)
        return cleaned

    def as_input(self) -> dict[str, Any]:
        """The cleaned values as the workflow's JSON input (empty optional fields left out)."""
        value: dict[str, Any] = {}
        for name, prop in (self.schema.get("properties") or {}).items():
            v = self.cleaned_data.get(name)
            if v in (None, "") and name not in self.schema.get("required", []):
                continue
            if prop.get("type") == "number" and v is not None:
                v = float(v)
            value[name] = v
        return value
