"""``/coverage/``: which rules can fire with my telemetry (issue 14).

The profile lives in the URL (``?p=``, :func:`catalog.queries.telemetry.encode_profile`), so
a result can be bookmarked and shared; "browse as my telemetry" also keeps it in the session
for the banner on every page. Pasted or uploaded events and profile files are read here and
turned into that URL (POST, then a redirect).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

import yaml
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from catalog.queries.telemetry import (
    coverage_answer,
    decode_profile,
    encode_profile,
    logsource_choices,
    matrix_columns,
    profile_from_choices,
    source_choices,
    telemetry_layer,
)
from catalog.throttling import check_sandbox_rate
from catalog.views import coverage_html as html
from rules.coverage import Profile, ProfileError, profile_from_events
from rules.events import EventInputError, read_events
from rules.text_input import decode_text

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # pasted or uploaded events, or a profile file
MAX_EVENTS = 10_000
LISTED = 100  # firable and blocked rules listed on the page (all of them in the CSV)
SESSION_KEY = "telemetry_profile"


class _Refused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _profile_of(request: HttpRequest) -> Profile:
    """The profile in ``?p=``, or one built from the picker's ``source``/``logsource``."""
    if request.GET.get("p"):
        return decode_profile(request.GET["p"])
    return profile_from_choices(request.GET.getlist("source"), request.GET.getlist("logsource"))


def coverage_url(profile: Profile, **extra: str) -> str:
    query = urlencode({"p": encode_profile(profile), **extra})
    return f"{reverse('catalog:coverage')}?{query}"


@require_http_methods(["GET", "HEAD", "POST"])
def coverage_page(request: HttpRequest) -> HttpResponse:
    try:
        if request.method == "POST":
            return HttpResponseRedirect(coverage_url(_posted_profile(request)))
        profile = _profile_of(request)
    except ProfileError as exc:
        return _page(request, Profile(), error=str(exc), status=400)
    except _Refused as exc:
        return _page(request, Profile(), error=str(exc), status=exc.status)
    if not request.GET.get("p") and not profile.empty:
        return HttpResponseRedirect(coverage_url(profile))  # the picker's form, made shareable
    return _page(request, profile)


def _page(
    request: HttpRequest, profile: Profile, *, error: str = "", status: int = 200
) -> HttpResponse:
    picked_sources = {f"{p.provider}:{'*' if p.event_id is None else p.event_id}"
                      for p in profile.event_sources}  # fmt: skip
    picked_logsources = {"/".join(key) for key in profile.logsources}
    view = "all" if request.GET.get("view") == "all" else "firable"
    context: dict[str, Any] = {
        "error": error,
        "profile": profile,
        "token": encode_profile(profile),
        "source_picker": html.picker("source", source_choices(), picked_sources, code=False),
        "logsource_picker": html.picker(
            "logsource", logsource_choices(), picked_logsources, code=True
        ),
        "view": view,
        "in_session": request.session.get(SESSION_KEY) == encode_profile(profile),
    }
    if not profile.empty:
        result, needs = coverage_answer(profile)
        context.update(
            result=result,
            counts=result.counts,
            matrix=html.matrix(matrix_columns(result), view),
            lost=[{"id": t, "name": attack_name(t)} for t in result.lost],
            firable=html.rule_links(needs[i] for i in result.firable[:LISTED]),
            blocked=html.blocked_rows((needs[b.id], b.reasons) for b in result.blocked[:LISTED]),
            listed=LISTED,
        )
    return render(request, "coverage/coverage.html", context, status=status)


def attack_name(tid: str) -> str:
    from rules import attack

    found = attack.technique(tid)
    return found.name if found else ""


def _posted_profile(request: HttpRequest) -> Profile:
    """A profile from pasted events, an events file or a profile file (one of them)."""
    wait = check_sandbox_rate(request)  # reading events costs what a sandbox run costs
    if wait is not None:
        raise _Refused(f"too many requests; try again in {wait} s", 429)
    upload = request.FILES.get("profile_file")
    if upload is not None:
        return read_profile_file(_read_upload(upload))
    upload = request.FILES.get("events_file")
    data: str | bytes = request.POST.get("events", "")
    if upload is not None:
        data = _read_upload(upload)
    if isinstance(data, str) and len(data) > MAX_UPLOAD_BYTES:
        raise _Refused(f"the events are over {MAX_UPLOAD_BYTES:,} characters", 413)
    if not data or (isinstance(data, str) and not data.strip()):
        raise _Refused("paste sample events or choose a file")
    try:
        reading = read_events(data, kind="auto", max_events=MAX_EVENTS)
    except EventInputError as exc:
        raise _Refused(f"the events could not be read: {exc}") from exc
    if reading.kind == "scriptblock":
        raise _Refused("that is not JSON, XML or EVTX events (a scriptblock is not a profile)")
    return profile_from_events(reading.events)


def _read_upload(upload: Any) -> bytes:
    if upload.size > MAX_UPLOAD_BYTES:
        raise _Refused(f"the file is over {MAX_UPLOAD_BYTES:,} bytes", 413)
    data: bytes = upload.read(MAX_UPLOAD_BYTES + 1)
    return data


def read_profile_file(data: bytes | str) -> Profile:
    """A saved profile (the JSON or YAML of :meth:`Profile.to_dict`, or the API's
    ``{"profile": {...}}``)."""
    try:
        text = decode_text(data)[0] if isinstance(data, bytes) else data
        # The safe C loader; alias bombs are bounded by the item caps checked after.
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (ValueError, yaml.YAMLError) as exc:
        raise ProfileError(f"the profile file is not JSON or YAML: {exc}"[:300], "profile") from exc
    if isinstance(loaded, dict) and set(loaded) == {"profile"}:
        loaded = loaded["profile"]
    return Profile.from_dict(loaded)


# --------------------------------------------------------------------------------------------
# Exports and the session toggle
# --------------------------------------------------------------------------------------------


def _export_profile(request: HttpRequest) -> Profile | HttpResponse:
    try:
        return decode_profile(request.GET.get("p", ""))
    except ProfileError as exc:
        return JsonResponse({"detail": str(exc), "parameter": "p"}, status=400)


@require_safe
def coverage_layer(request: HttpRequest) -> HttpResponse:
    profile = _export_profile(request)
    if isinstance(profile, HttpResponse):
        return profile
    result, _ = coverage_answer(profile)
    layer = telemetry_layer(result, name="Sigma catalog: rules that can fire with my telemetry")
    response = JsonResponse(layer, json_dumps_params={"indent": 1})
    response["Content-Disposition"] = 'attachment; filename="telemetry-layer.json"'
    return response


@require_safe
def coverage_csv(request: HttpRequest) -> HttpResponse:
    profile = _export_profile(request)
    if isinstance(profile, HttpResponse):
        return profile
    result, needs = coverage_answer(profile)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "title", "logsource", "can_fire", "reasons"])
    for rule_id in result.firable:
        need = needs[rule_id]
        writer.writerow([rule_id, need.title, need.label, "yes", ""])
    for blocked in result.blocked:
        need = needs[blocked.id]
        writer.writerow([blocked.id, need.title, need.label, "no", "; ".join(blocked.reasons)])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="telemetry-coverage.csv"'
    return response


@require_safe
def coverage_profile_file(request: HttpRequest) -> HttpResponse:
    profile = _export_profile(request)
    if isinstance(profile, HttpResponse):
        return profile
    text = "# Sigma catalog telemetry profile (upload on /coverage/, POST to /api/coverage/)\n"
    text += yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True)
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="telemetry-profile.yml"'
    return response


@require_POST
def coverage_use(request: HttpRequest) -> HttpResponse:
    """Browse the site "as my telemetry" (``on``) or stop (anything else)."""
    token = request.POST.get("p", "")
    if request.POST.get("use") == "on" and token:
        try:
            decode_profile(token)
        except ProfileError as exc:
            return _page(request, Profile(), error=str(exc), status=400)
        request.session[SESSION_KEY] = token
    else:
        request.session.pop(SESSION_KEY, None)
    back = request.POST.get("next", "")
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("catalog:coverage") + (f"?{urlencode({'p': token})}" if token else "")
    return HttpResponseRedirect(back)


def session_token(request: HttpRequest) -> str:
    """The profile the visitor browses as, without creating a session for anyone else."""
    from django.conf import settings

    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return ""
    token = request.session.get(SESSION_KEY, "")
    return token if isinstance(token, str) else ""
