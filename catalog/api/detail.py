"""The rule API detail's loader, which lives in :mod:`catalog.queries` (the rule page uses it
too); re-exported here for the API's existing imports."""

from catalog.queries.rules import PredicateLink, RuleDetail, load_rule_detail

__all__ = ["PredicateLink", "RuleDetail", "load_rule_detail"]
