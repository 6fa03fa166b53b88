"""ATT&CK pages: the matrix, one tactic, one technique."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from catalog.caching import cached
from catalog.models import Technique
from catalog.queries import matrix_data, tactic_rule_ids, technique_rules
from catalog.services import catalog_fingerprint
from catalog.views.common import rules_page
from rules import attack

HEAT_LEVELS = [(0, "0"), (1, "1-2"), (2, "3-9"), (3, "10-29"), (4, "30-99"), (5, "100+")]


@require_safe
def attack_matrix(request: HttpRequest) -> HttpResponse:
    fingerprint = catalog_fingerprint()
    data = cached("matrix", fingerprint, matrix_data)
    covered_only = request.GET.get("covered") == "1"
    return render(
        request,
        "catalog/attack_matrix.html",
        {**data, "covered_only": covered_only, "fingerprint": fingerprint,
         "heat_levels": HEAT_LEVELS},
    )  # fmt: skip


@require_safe
def tactic_detail(request: HttpRequest, shortname: str) -> HttpResponse:
    found = attack.tactic(shortname)
    if found is None:
        raise Http404("No such ATT&CK tactic")
    fingerprint = catalog_fingerprint()
    data = cached("matrix", fingerprint, matrix_data)
    column = next((c for c in data["columns"] if c["tactic"].shortname == found.shortname), None)
    ids = cached(f"tactic-ids:{found.shortname}", fingerprint,
                 lambda: tactic_rule_ids(found.shortname))  # fmt: skip
    cells = sorted(column["cells"], key=lambda c: (-c["count"], c["name"])) if column else []
    return render(
        request,
        "catalog/tactic_detail.html",
        {"tactic": found, "cells": cells, **rules_page(request, ids, fingerprint),
         "rules_url": reverse("catalog:rule-list") + "?" + urlencode({"tactic": found.shortname})},
    )  # fmt: skip


@require_safe
def technique_detail(request: HttpRequest, attack_id: str) -> HttpResponse:
    tid = attack_id.strip().upper()
    if not attack.is_technique_id(tid):
        raise Http404("Not an ATT&CK technique id")
    row = Technique.objects.filter(attack_id=tid).first()
    found = attack.technique(tid)
    if row is None and found is None:
        raise Http404("No such ATT&CK technique")
    name = found.name if found else (row.name if row else "")
    parent_id = found.parent_id if found else (row.parent_id if row else "")
    tactics = [t for t in (attack.tactic(s) for s in (found.tactics if found else row.tactics))
               if t is not None]  # fmt: skip
    fingerprint = catalog_fingerprint()
    data = cached(f"technique:{tid}", fingerprint, lambda: technique_rules(tid))
    return render(
        request,
        "catalog/technique_detail.html",
        {
            "tid": tid,
            "name": name,
            "found": found,
            "known": found is not None,
            "parent_id": parent_id,
            "parent_name": (found.parent_name if found else "") or "",
            "tactics": tactics,
            "subs": data["subs"],
            **rules_page(request, data["ids"], fingerprint),
            "rules_url": reverse("catalog:rule-list") + "?" + urlencode({"technique": tid}),
        },
    )
