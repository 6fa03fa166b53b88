"""``{% rule_conversion rule as convert %}``: the Convert section's context for any page.

The rule page includes ``rules/_convert.html`` with its own context (``rule`` and
``request``); this tag lets the include fetch its conversion itself, from the cache.
"""

from __future__ import annotations

from typing import Any

from django import template

from catalog.conversion_views import conversion_context
from catalog.models import Rule

register = template.Library()


@register.simple_tag(takes_context=True)
def rule_conversion(context: template.Context, rule: Rule) -> dict[str, Any]:
    return conversion_context(context.get("request"), rule)
