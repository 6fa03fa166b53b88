"""``{% telemetry_banner %}``: the "browsing as my telemetry" banner of every page (issue 14).

Shown only to a visitor who turned it on (their session holds a profile); a visitor without a
session cookie costs nothing and gets no session.
"""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("coverage/_banner.html", takes_context=True)
def telemetry_banner(context: template.Context) -> dict[str, Any]:
    from catalog.queries.telemetry import coverage_answer, decode_profile
    from catalog.views.coverage import coverage_url, session_token
    from rules.coverage import ProfileError

    request = context.get("request")
    token = session_token(request) if request is not None else ""
    if not token:
        return {"token": ""}
    try:
        profile = decode_profile(token)
    except ProfileError:
        return {"token": ""}
    result, _ = coverage_answer(profile)
    return {
        "token": token,
        "counts": result.counts,
        "coverage_url": coverage_url(profile),
        "next": request.get_full_path(),
        "this_rule": _this_rule(request, result),
    }


def _this_rule(request: Any, result: Any) -> dict[str, Any] | None:
    """On a rule page: whether that rule can fire with the profile, and why not."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.view_name != "catalog:rule-detail":
        return None
    rule_id = match.kwargs.get("rule_id", "")
    if rule_id in result.firable:
        return {"firable": True, "reasons": ()}
    blocked = next((b for b in result.blocked if b.id == rule_id), None)
    return {"firable": False, "reasons": blocked.reasons} if blocked else None
