"""How catalog data is shown on pages: tag links grouped by namespace, a rule's predicates
grouped by (field, kind), safe reference links. Plain data in, dataclasses out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from django.urls import reverse

from catalog.queries import PredicateLink
from catalog.templatetags.catalog_tags import rarity
from rules import attack

NAMESPACE_LABELS = {
    "attack": "ATT&CK",
    "cve": "CVE",
    "car": "CAR",
    "detection": "Detection",
    "stp": "STP",
    "tlp": "TLP",
    "d3fend": "D3FEND",
}


class TagLike(Protocol):
    """A rule tag: the ``Tag`` model or :class:`catalog.queries.TagRow`."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def value(self) -> str: ...


@dataclass(slots=True)
class TagLink:
    label: str
    title: str = ""
    url: str = ""  # the catalog page (rules with this tag, technique page...)
    external: str = ""  # MITRE, NVD, CAR
    known: bool = True


@dataclass(slots=True)
class TagGroup:
    namespace: str
    label: str
    tags: list[TagLink] = field(default_factory=list)


def _attack_link(tag: TagLike, rules_url: str) -> TagLink:
    resolved = attack.resolve_attack_tag(tag.value)
    label = f"{resolved.id} {resolved.name}" if resolved.name else resolved.id
    if resolved.kind == "technique":
        url = reverse("catalog:technique-detail", args=[resolved.id])
    elif resolved.kind == "tactic" and resolved.known:
        found = attack.tactic(tag.value)
        url = reverse("catalog:tactic-detail", args=[found.shortname]) if found else ""
        label = resolved.name or tag.value
    else:
        url = rules_url
    return TagLink(label, tag.name, url, resolved.url or "", resolved.known)


def tag_link(tag: TagLike) -> TagLink:
    """The link a tag gets on the rule page: its catalog page and its reference site."""
    rules_url = reverse("catalog:rule-list") + "?" + urlencode({"tag": tag.name})
    value = tag.value
    if tag.namespace == "attack":
        return _attack_link(tag, rules_url)
    if tag.namespace == "cve":
        cve = "CVE-" + value.upper().removeprefix("CVE-")
        return TagLink(cve, tag.name, rules_url, f"https://nvd.nist.gov/vuln/detail/{cve}")
    if tag.namespace == "car":
        car = "CAR-" + value.upper().removeprefix("CAR-")
        return TagLink(car, tag.name, rules_url, f"https://car.mitre.org/analytics/{car}/")
    return TagLink(value, tag.name, rules_url)


def tag_groups(tags: Iterable[TagLike]) -> list[TagGroup]:
    """Tags grouped by namespace in a fixed order (ATT&CK, CVE, CAR, detection, STP, TLP)."""
    groups: dict[str, TagGroup] = {}
    for tag in tags:
        label = NAMESPACE_LABELS.get(tag.namespace, tag.namespace)
        groups.setdefault(tag.namespace, TagGroup(tag.namespace, label)).tags.append(tag_link(tag))
    order = list(NAMESPACE_LABELS)
    return sorted(groups.values(), key=lambda g: (order.index(g.namespace)
                                                  if g.namespace in order else len(order),
                                                  g.namespace))  # fmt: skip


@dataclass(slots=True)
class PredicateGroup:
    """Rows of one (field, kind) on the rule page: the rule's values and their corpus counts."""

    field: str
    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def predicate_groups(links: Iterable[PredicateLink]) -> list[PredicateGroup]:
    """A rule's indicators (or exclusions) grouped by (field, kind), in the rule's order."""
    groups: dict[tuple[str, str], PredicateGroup] = {}
    for link in links:
        group = groups.setdefault((link.field, link.kind), PredicateGroup(link.field, link.kind))
        group.rows.append({"link": link, "rarity": rarity(link.corpus)})
    return list(groups.values())


def safe_url(url: str) -> str | None:
    """Only http(s) references become links; ``javascript:`` and the like stay text."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None
