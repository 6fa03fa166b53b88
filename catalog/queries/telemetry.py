"""Coverage for a telemetry profile (issue 14): the catalog's rules as :class:`RuleNeeds`,
the event sources and logsources to pick from, profiles in URLs, and the ATT&CK matrix of
firable rules beside the full one.

The rules' needs are built once per catalog state and process (three queries over the whole
catalog, like the sandbox's evaluator), so one coverage answer is pure computation.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from typing import Any
from urllib.parse import quote, unquote

from catalog.models import Rule, RuleIndicator
from catalog.services import current_fingerprint
from rules import attack
from rules.coverage import (
    MAX_PROFILE_ITEMS,
    CoverageResult,
    EventSourcePick,
    Profile,
    ProfileError,
    RuleNeeds,
    coverage,
    rule_needs,
)

MAX_TOKEN_CHARS = 16 * 1024  # a profile in a URL parameter
_LOCK = threading.Lock()
_ANSWERS_KEPT = 64  # coverage answers per process (the banner recomputes one on every page)


class _State:
    """What one catalog state gives: every rule's needs, the picker lists, recent answers."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.needs = _build_needs()
        self.by_id = {need.id: need for need in self.needs}
        self.sources = _source_choices(self.needs)
        self.logsources = _logsource_choices(self.needs)
        self.answers: OrderedDict[str, CoverageResult] = OrderedDict()


_STATE: dict[str, _State] = {}


def _state() -> _State:
    fingerprint = current_fingerprint()
    with _LOCK:
        state = _STATE.get("catalog")
        if state is None or state.fingerprint != fingerprint:
            state = _State(fingerprint)
            _STATE["catalog"] = state
        return state


def catalog_needs() -> list[RuleNeeds]:
    """Every catalog rule's needs, rebuilt when the catalog fingerprint changes."""
    return _state().needs


def clear_telemetry_cache() -> None:
    with _LOCK:
        _STATE.clear()


def _build_needs() -> list[RuleNeeds]:
    indicators: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for rule_pk, field, kind, value in RuleIndicator.objects.values_list(
        "rule_id", "indicator__field", "indicator__kind", "value"
    ).iterator(chunk_size=5000):
        indicators[rule_pk].append((field, kind, value))
    techniques: dict[int, list[str]] = defaultdict(list)
    for rule_pk, tid in Rule.techniques.through.objects.values_list(
        "rule_id", "technique__attack_id"
    ):
        techniques[rule_pk].append(tid)
    return [
        rule_needs(rule_id, title, (p, c, s), indicators.get(pk, ()), techniques.get(pk, ()))
        for pk, rule_id, title, p, c, s in Rule.objects.order_by("title").values_list(
            "pk", "rule_id", "title", "product", "category", "service"
        )
    ]


# --------------------------------------------------------------------------------------------
# Profiles in URLs: ``p=s:Microsoft-Windows-PowerShell:4104;l:windows/ps_script/;f:Image``
# --------------------------------------------------------------------------------------------


def encode_profile(profile: Profile) -> str:
    """The compact, URL-safe form a page keeps the profile in (``?p=...``)."""
    parts = [
        f"s:{quote(p.provider, safe='')}:{'*' if p.event_id is None else p.event_id}"
        for p in profile.event_sources
    ]
    parts += ["l:" + "/".join(quote(x, safe="") for x in key) for key in profile.logsources]
    parts += [f"f:{quote(name, safe='')}" for name in sorted(profile.fields or ())]
    return ";".join(parts)


def decode_profile(token: str) -> Profile:
    """Read ``encode_profile``'s form; raises :class:`ProfileError` on anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ProfileError(f"the profile is longer than {MAX_TOKEN_CHARS} characters", "p")
    sources: list[dict[str, Any]] = []
    logsources: list[dict[str, str]] = []
    fields: list[str] | None = None
    items = [item for item in token.split(";") if item]
    if len(items) > MAX_PROFILE_ITEMS:
        raise ProfileError(f"a profile holds at most {MAX_PROFILE_ITEMS} items", "p")
    for item in items:
        kind, _, rest = item.partition(":")
        if kind == "s":
            provider, _, event_id = rest.rpartition(":")
            sources.append({"provider": unquote(provider), "event_id": None if event_id == "*"
                            else event_id})  # fmt: skip
        elif kind == "l":
            parts = [unquote(x) for x in rest.split("/")]
            if len(parts) != 3:
                raise ProfileError("a logsource is product/category/service", "p")
            logsources.append(dict(zip(("product", "category", "service"), parts, strict=True)))
        elif kind == "f":
            fields = [*(fields or []), unquote(rest)]
        else:
            raise ProfileError(f"unknown profile item {item[:40]!r}", "p")
    return Profile.from_dict({"event_sources": sources, "logsources": logsources,
                              "fields": fields})  # fmt: skip


# --------------------------------------------------------------------------------------------
# What to pick from
# --------------------------------------------------------------------------------------------


def source_choices() -> list[dict[str, Any]]:
    """Event sources the catalog's rules read, most used first: provider + event ID."""
    return _state().sources


def logsource_choices() -> list[dict[str, Any]]:
    """Logsources (product/category/service) of the catalog's rules, most used first."""
    return _state().logsources


def _source_choices(needs: list[RuleNeeds]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, int | None]] = Counter()
    for need in needs:
        for ref in {(ref.label, ref.event_id) for ref in need.sources}:
            counts[ref] += 1
    choices = []
    for (label, event_id), n in counts.most_common():
        provider = label if event_id is None else label.rsplit(" ", 1)[0]
        provider = provider.removesuffix(" (all events)")
        value = f"{provider}:{'*' if event_id is None else event_id}"
        choices.append({"label": label, "value": value, "rules": n})
    return choices


def _logsource_choices(needs: list[RuleNeeds]) -> list[dict[str, Any]]:
    counts = Counter(need.logsource for need in needs)
    return [
        {"label": "/".join(p for p in key if p) or "(none)", "value": "/".join(key), "rules": n}
        for key, n in counts.most_common()
        if any(key)
    ]


def profile_from_choices(sources: list[str], logsources: list[str]) -> Profile:
    """A profile from the picker's checkbox values (``Provider:4104``, ``windows/ps_script/``)."""
    picks = []
    for value in sources:
        provider, _, event_id = value.rpartition(":")
        picks.append({"provider": provider, "event_id": None if event_id == "*" else event_id})
    keys = []
    for value in logsources:
        parts = value.split("/")
        if len(parts) != 3:
            raise ProfileError("a logsource is product/category/service", "logsource")
        keys.append(dict(zip(("product", "category", "service"), parts, strict=True)))
    return Profile.from_dict({"event_sources": picks, "logsources": keys})


def with_sources(profile: Profile, extra: list[EventSourcePick]) -> Profile:
    return Profile(tuple(dict.fromkeys([*profile.event_sources, *extra])), profile.logsources,
                   profile.fields)  # fmt: skip


# --------------------------------------------------------------------------------------------
# One answer
# --------------------------------------------------------------------------------------------


def coverage_answer(profile: Profile) -> tuple[CoverageResult, dict[str, RuleNeeds]]:
    """The coverage of ``profile`` and every rule's needs by id (recent answers are kept)."""
    state = _state()
    key = encode_profile(profile)
    with _LOCK:
        result = state.answers.get(key)
        if result is not None:
            state.answers.move_to_end(key)
            return result, state.by_id
    result = coverage(profile, state.needs)
    with _LOCK:
        state.answers[key] = result
        while len(state.answers) > _ANSWERS_KEPT:
            state.answers.popitem(last=False)
    return result, state.by_id


def matrix_columns(result: CoverageResult) -> list[dict[str, Any]]:
    """The v19 matrix: per technique (sub-techniques rolled up), rules overall and firable."""
    everything: Counter[str] = Counter()
    firable: Counter[str] = Counter()
    for tid, n in result.techniques_all.items():
        everything[tid.split(".", 1)[0]] += n
    for tid, n in result.techniques_firable.items():
        firable[tid.split(".", 1)[0]] += n
    columns = []
    for tactic in attack.tactics_in_matrix_order():
        cells = [
            {"id": t.id, "name": t.name, "all": everything.get(t.id, 0),
             "firable": firable.get(t.id, 0)}
            for t in attack.techniques_for_tactic(tactic.shortname)
            if everything.get(t.id)
        ]  # fmt: skip
        for cell in cells:
            cell["lost"] = bool(cell["all"]) and not cell["firable"]
        columns.append(
            {"tactic": tactic, "cells": cells,
             "covered": sum(1 for c in cells if c["all"]),
             "firable": sum(1 for c in cells if c["firable"])}
        )  # fmt: skip
    return columns


def telemetry_layer(result: CoverageResult, *, name: str) -> dict[str, Any]:
    """An ATT&CK Navigator layer (format 4.5): per technique, the share of its rules that can
    fire (score 0-100; 0 = every rule lost), with "x of y rules can fire" as the comment."""
    from catalog.api.coverage import LAYER_DOMAIN, LAYER_FORMAT_VERSION, NAVIGATOR_VERSION

    entries = []
    for tid, total in sorted(result.techniques_all.items()):
        found = attack.technique(tid)
        if found is None or found.status != "current":
            continue
        fire = result.techniques_firable.get(tid, 0)
        entry: dict[str, Any] = {"techniqueID": tid}
        if len(found.tactics) == 1:
            entry["tactic"] = found.tactics[0]
        plural = "s" if total != 1 else ""
        entry.update(
            score=round(100 * fire / total), enabled=True, showSubtechniques=False,
            comment=f"{fire} of {total} rule{plural} can fire",
        )  # fmt: skip
        entries.append(entry)
    counts = result.counts
    return {
        "name": name,
        "versions": {"attack": attack.ATTACK_VERSION, "navigator": NAVIGATOR_VERSION,
                     "layer": LAYER_FORMAT_VERSION},
        "domain": LAYER_DOMAIN,
        "description": f"{counts['firable']} of {counts['rules']} rules can fire with this "
                       "telemetry; score = % of a technique's rules that can fire",
        "techniques": entries,
        "gradient": {"colors": ["#ff6666", "#ffe766", "#8ec843"], "minValue": 0, "maxValue": 100},
        "legendItems": [{"label": "every rule blocked", "color": "#ff6666"},
                        {"label": "every rule can fire", "color": "#8ec843"}],
        "metadata": [{"name": "firable rules", "value": str(counts["firable"])},
                     {"name": "blocked rules", "value": str(counts["blocked"])},
                     {"name": "techniques lost", "value": str(counts["techniques_lost"])}],
    }  # fmt: skip
