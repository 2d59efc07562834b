"""``{% timeline_entry entry %}``: one timeline entry, built by orchestration.timeline.entry_html
(the ticket page's timeline; the run page joins the rows in its view)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from orchestration.timeline import Entry, entry_html

register = template.Library()


@register.simple_tag(takes_context=True)
def timeline_entry(context: Any, entry: Entry) -> SafeString:
    """The entry's ``<li>``, marked as the failing step where the page names one."""
    return entry_html(entry, context.get("failing_tool_id"), context.get("failing_model_id"))
