"""Template helpers for the catalog pages: URLs that keep the page state, badges, YAML
highlighting and server-rendered SVG charts (no JavaScript, no inline styles: the site's
Content-Security-Policy allows neither)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django import template
from django.http import QueryDict
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import YamlLexer

from rules import attack

register = template.Library()

# CSS classes only (``noclasses`` False): the colours live in static/css/pygments.css.
_YAML_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)
_YAML_LEXER = YamlLexer()


@lru_cache(maxsize=4096)
def highlight_yaml_html(text: str) -> str:
    """Pygments HTML for a YAML text; memoised because rule bodies repeat across requests."""
    return highlight(text, _YAML_LEXER, _YAML_FORMATTER)


@register.filter
def yaml_html(text: str) -> SafeString:
    """``{{ rule.raw_yaml|yaml_html }}``: Pygments escapes every token, so the result is safe."""
    return mark_safe(highlight_yaml_html(text or ""))  # noqa: S308


@register.filter
def show_value(value: str) -> str:
    """Quote a value with surrounding spaces (or none at all): ``' 443 '`` is not ``443``."""
    text = str(value)
    return f"'{text}'" if not text or text != text.strip() else text


@register.filter
def thousands(value: Any) -> str:
    """``12345`` -> ``12,345`` (django.contrib.humanize is not installed)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def percent(part: Any, whole: Any) -> int:
    """Rounded percentage of ``part`` in ``whole`` (0 when ``whole`` is 0)."""
    try:
        return round(100 * int(part) / int(whole)) if int(whole) else 0
    except (TypeError, ValueError):
        return 0


@register.simple_tag(takes_context=True)
def query(context: template.Context, **changes: Any) -> str:
    """The current URL's query string with ``changes`` applied; ``None``/``""`` removes a key.

    Changing anything but ``page`` goes back to the first page, so a new sort or page size
    never lands on an empty page.
    """
    request = context.get("request")
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    if "page" not in changes:
        params.pop("page", None)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag
def attack_attribution() -> str:
    return attack.ATTACK_ATTRIBUTION


@register.simple_tag
def attack_version() -> str:
    return attack.ATTACK_VERSION


def rarity(count: int) -> str:
    """How widely an indicator is shared: ``unique`` (1 rule), ``rare`` (2-4), ``shared``
    (5-19), ``common`` (20+)."""
    if count <= 1:
        return "unique"
    if count < 5:
        return "rare"
    if count < 20:
        return "shared"
    return "common"


register.filter("rarity", rarity)


def heat_level(count: int) -> int:
    """Heat-map bucket 0-5 for a rule count (0, 1-2, 3-9, 10-29, 30-99, 100+)."""
    for level, floor in ((5, 100), (4, 30), (3, 10), (2, 3), (1, 1)):
        if count >= floor:
            return level
    return 0


register.filter("heat", heat_level)


# --------------------------------------------------------------------------------------------
# SVG charts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartRow:
    label: str
    value: int
    url: str = ""
    css: str = ""


_WIDTH = 400
_ROW = 36
_BAR = 11
_LABEL_CHARS = 52


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def bar_chart_svg(rows: Sequence[ChartRow], title: str, chart_id: str) -> str:
    """A horizontal bar chart: each row's label above its bar, the value at the bar's end.

    Labels sit above the bars (not beside them) so the chart stays legible when it scales
    down to a phone's width. Each row links to the page listing what it counts.
    """
    if not rows:
        return mark_safe('<p class="muted">No data yet.</p>')  # a constant: nothing to escape
    peak = max(row.value for row in rows) or 1
    track = _WIDTH - 56
    height = len(rows) * _ROW + 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t" width="100%" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>'
    ]
    for index, row in enumerate(rows):
        top = index * _ROW + 2
        width = max(2.0, track * row.value / peak) if row.value else 0.0
        body = (
            f"<title>{escape(row.label)}: {row.value:,}</title>"
            f'<text class="chart-label" x="0" y="{top + 14}">{escape(_short(row.label))}</text>'
            f'<rect class="chart-track" x="0" y="{top + 20}" width="{track}" height="{_BAR}"'
            ' rx="2"/>'
            f'<rect class="chart-bar {escape(row.css)}" x="0" y="{top + 20}" '
            f'width="{width:.1f}" height="{_BAR}" rx="2"/>'
            f'<text class="chart-value" x="{width + 6:.1f}" y="{top + 30}">{row.value:,}</text>'
        )
        if row.url:
            parts.append(f'<a href="{escape(row.url)}">{body}</a>')
        else:
            parts.append(f"<g>{body}</g>")
    parts.append("</svg>")
    return "".join(parts)


@register.simple_tag
def bar_chart(rows: Iterable[Any], title: str, chart_id: str) -> SafeString:
    """``{% bar_chart rows "Rules by level" "chart-level" %}``; rows are :class:`ChartRow`s or
    ``(label, value, url[, css])`` tuples. Every text is escaped before it enters the SVG."""
    normalised = [row if isinstance(row, ChartRow) else ChartRow(*row) for row in rows]
    return mark_safe(bar_chart_svg(normalised, title, chart_id))  # noqa: S308


@register.simple_tag
def minibar(value: Any, total: Any) -> SafeString:
    """A tiny proportional bar for table cells (SVG attributes, not inline styles)."""
    try:
        share = max(0.0, min(1.0, float(value) / float(total))) if float(total) else 0.0
    except (TypeError, ValueError):
        share = 0.0
    return format_html(
        '<svg class="minibar" viewBox="0 0 100 8" aria-hidden="true" focusable="false">'
        '<rect class="chart-track" width="100" height="8" rx="2"/>'
        '<rect class="chart-bar" width="{}" height="8" rx="2"/></svg>',
        f"{share * 100:.1f}",
    )


class DataTableNode(template.Node):
    def __init__(self, nodelist: template.NodeList, css: Any, caption: Any) -> None:
        self.nodelist, self.css, self.caption = nodelist, css, caption

    def render(self, context: template.Context) -> str:
        head = format_html(
            '<div class="table-wrap">\n<table class="data stack{}">\n'
            '<caption class="visually-hidden">{}</caption>',
            self.css.resolve(context), self.caption.resolve(context),
        )  # fmt: skip
        return head + self.nodelist.render(context) + "</table>\n</div>"


@register.tag
def datatable(parser: Any, token: Any) -> DataTableNode:
    """``{% datatable " coverage" "Caption" %}<thead>…</tbody>{% enddatatable %}``: the
    scrolling wrapper, table classes and hidden caption every catalog table shares."""
    bits = token.split_contents()
    if len(bits) != 3:
        raise template.TemplateSyntaxError("datatable takes a class suffix and a caption")
    nodelist = parser.parse(("enddatatable",))
    parser.delete_first_token()
    return DataTableNode(nodelist, parser.compile_filter(bits[1]), parser.compile_filter(bits[2]))


@register.simple_tag(takes_context=True)
def current(context: template.Context, prefix: str) -> SafeString:
    """`` aria-current="page"`` on the nav link of the section the request is in."""
    request = context.get("request")
    path = request.path if request is not None else ""
    active = path == prefix if prefix == "/" else path.startswith(prefix)
    return mark_safe(' aria-current="page"') if active else SafeString("")
