"""Pages (placeholder until the pages issue lands)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from catalog.models import Exclusion, Indicator, Rule, Technique


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{Rule.objects.count()} rules")


def rule_detail(request: HttpRequest, rule_id: str) -> HttpResponse:
    return HttpResponse(get_object_or_404(Rule, rule_id=rule_id).title)


def technique_detail(request: HttpRequest, attack_id: str) -> HttpResponse:
    return HttpResponse(str(get_object_or_404(Technique, attack_id=attack_id.upper())))


def indicator_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(str(get_object_or_404(Indicator, pk=pk)))


def exclusion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(str(get_object_or_404(Exclusion, pk=pk)))
