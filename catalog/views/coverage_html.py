"""The long repeated parts of ``/coverage/`` built as HTML in Python (the picker's hundreds of
checkboxes, the matrix, the rule lists): a template loop over them cost most of the page's
200 ms budget. Every value goes through :func:`django.utils.html.escape`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from catalog.templatetags.catalog_tags import heat_level
from rules.coverage import RuleNeeds

VISIBLE_SOURCES = 12  # shown before "more event sources"


def _checkbox(name: str, choice: dict[str, Any], picked: set[str], code: bool) -> str:
    label = f"<code>{escape(choice['label'])}</code>" if code else escape(choice["label"])
    checked = " checked" if choice["value"] in picked else ""
    return (
        f'<li><label><input type="checkbox" name="{name}" value="{escape(choice["value"])}"'
        f'{checked}> {label}</label> <span class="count">{choice["rules"]:,}</span></li>'
    )


def picker(name: str, choices: list[dict[str, Any]], picked: set[str], *, code: bool) -> SafeString:
    """Checkbox items; past the first few, inside a <details> (every item stays a field)."""
    items = [_checkbox(name, choice, picked, code) for choice in choices]
    head, rest = (items[:VISIBLE_SOURCES], items[VISIBLE_SOURCES:]) if not code else ([], items)
    html = f'<ul class="plain-list pick-list">{"".join(head)}</ul>' if head else ""
    if rest:
        more = f"{len(rest)} more event sources" if head else f"{len(rest)} logsources"
        html += (f"<details><summary>{more}</summary>"
                 f'<ul class="plain-list pick-list">{"".join(rest)}</ul></details>')  # fmt: skip
    return mark_safe(html)  # noqa: S308 - built from escaped values only


def matrix(columns: list[dict[str, Any]], view: str) -> SafeString:
    """The matrix columns: all rules, or with the telemetry (firable / all, lost cells)."""
    tactic_url = reverse("catalog:tactic-detail", args=["TACTIC"])
    technique_url = reverse("catalog:technique-detail", args=["TECH"])
    out = []
    for col in columns:
        tactic = col["tactic"]
        sub = (f"{col['covered']} techniques" if view == "all"
               else f"{col['firable']}/{col['covered']} techniques")  # fmt: skip
        cells = []
        for cell in col["cells"]:
            href = technique_url.replace("TECH", escape(cell["id"]))
            if view == "all":
                meta = f"{escape(cell['id'])} · {cell['all']} rule{'s' if cell['all'] != 1 else ''}"
                cells.append(f'<li class="cell heat-{heat_level(cell["all"])}"><a href="{href}">'
                             f'<span class="cell-name">{escape(cell["name"])}</span>'
                             f'<span class="cell-meta">{meta}</span></a></li>')  # fmt: skip
                continue
            lost = " lost" if cell["lost"] else ""
            meta = (
                f"{escape(cell['id'])} · {cell['firable']}/{cell['all']}{' · lost' if lost else ''}"
            )
            cells.append(f'<li class="cell heat-{heat_level(cell["firable"])}{lost}" '
                         f'data-technique="{escape(cell["id"])}"><a href="{href}">'
                         f'<span class="cell-name">{escape(cell["name"])}</span>'
                         f'<span class="cell-meta">{meta}</span></a></li>')  # fmt: skip
        short = escape(tactic.shortname)
        head = tactic_url.replace("TACTIC", short)
        out.append(
            f'<section class="matrix-col" aria-labelledby="cov-{short}">'
            f'<h2 id="cov-{short}" class="matrix-head"><a href="{head}">'
            f'{escape(tactic.name)}</a> <span class="matrix-sub">{sub}</span></h2>'
            f"<ol>{''.join(cells)}</ol></section>"
        )
    return mark_safe("".join(out))  # noqa: S308 - built from escaped values only


def rule_links(rules: Iterable[RuleNeeds]) -> SafeString:
    url = reverse("catalog:rule-detail", args=["RULE"])
    items = [f'<li><a href="{url.replace("RULE", escape(r.id))}">{escape(r.title)}</a></li>'
             for r in rules]  # fmt: skip
    return mark_safe("".join(items) or '<li class="muted">None.</li>')  # noqa: S308


def blocked_rows(blocked: Iterable[tuple[RuleNeeds, tuple[str, ...]]]) -> SafeString:
    url = reverse("catalog:rule-detail", args=["RULE"])
    rows = [
        f'<tr><th scope="row" data-label="Rule"><a href="{url.replace("RULE", escape(r.id))}">'
        f'{escape(r.title)}</a></th><td data-label="Logsource"><code>{escape(r.label or "—")}'
        f'</code></td><td data-label="Why">{escape("; ".join(reasons))}</td></tr>'
        for r, reasons in blocked
    ]
    return mark_safe("".join(rows))  # noqa: S308 - built from escaped values only
