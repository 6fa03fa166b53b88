"""Server-rendered catalog pages, one module per area; every view only handles the request.

Reads come from :mod:`catalog.queries` (shared with the API), caching from
:mod:`catalog.caching`, the rule list's facets from :mod:`catalog.facets` and how tags and
predicates are shown from :mod:`catalog.presentation`. Query counts stay constant per page:
related rows come from ``prefetch_related`` / ``select_related`` or one ``UNION ALL``, never
from per-row lookups in templates.
"""

from catalog.views.attack import attack_matrix, tactic_detail, technique_detail
from catalog.views.events import event_detail, event_list
from catalog.views.home import home
from catalog.views.predicates import (
    exclusion_detail,
    exclusion_list,
    indicator_detail,
    indicator_list,
)
from catalog.views.rule_detail import rule_detail, rule_download
from catalog.views.rule_list import rule_list

__all__ = [
    "attack_matrix", "event_detail", "event_list", "exclusion_detail", "exclusion_list",
    "home", "indicator_detail", "indicator_list", "rule_detail", "rule_download", "rule_list",
    "tactic_detail", "technique_detail",
]  # fmt: skip
