"""``{% rule_filters_conversion rule target meta as filtered %}``: the meta filters that apply
to a rule, and the rule converted with them, for the Convert section (issue 16). ``meta`` is
the rule page's :class:`catalog.correlations.RuleMeta` (absent on other pages: looked up)."""

from __future__ import annotations

from typing import Any

from django import template

from catalog.models import Rule

register = template.Library()


@register.simple_tag
def rule_filters_conversion(rule: Rule, target: str, meta: Any = None) -> dict[str, Any]:
    from catalog.correlations import filtered_rule_conversion

    filters = getattr(meta, "filters", None)
    return filtered_rule_conversion(rule, target, list(filters) if filters is not None else None)
