"""``manage.py convert_rules``: warm the conversion cache and report per-target results.

Prints, per target, how many catalog rules converted and every failure with its reason, so a
backend upgrade or a new rule pack can be checked in one run::

    manage.py convert_rules --all-targets
    manage.py convert_rules --target splunk --target kusto --pipeline microsoft_xdr
    manage.py convert_rules --target loki --all-pipelines --max-failures 20
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.conversion import TargetSummary, warm
from catalog.models import Rule
from rules.convert import TARGETS, ConversionParameterError


class Command(BaseCommand):
    help = (
        "Convert catalog rules for SIEM targets (cached per rule revision and backend "
        "version) and print per-target counts and failures with reasons."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--target",
            action="append",
            default=[],
            choices=sorted(TARGETS),
            help="target to convert for (repeatable)",
        )
        parser.add_argument("--all-targets", action="store_true", help="every target")
        parser.add_argument(
            "--pipeline", help="pipeline id (default: each target's default pipeline)"
        )
        parser.add_argument(
            "--all-pipelines", action="store_true", help="every pipeline each target allows"
        )
        parser.add_argument(
            "--format", dest="output_format", default="default", help="output format"
        )
        parser.add_argument("--rule", action="append", default=[], help="only this rule id")
        parser.add_argument("--force", action="store_true", help="convert again even when cached")
        parser.add_argument(
            "--max-failures",
            type=int,
            default=None,
            help="print at most N failures per target (default: all)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        targets: list[str] = list(TARGETS) if options["all_targets"] else options["target"]
        if not targets:
            raise CommandError("give --target TARGET (repeatable) or --all-targets")
        rules = Rule.objects.order_by("rule_id")
        if options["rule"]:
            rules = rules.filter(rule_id__in=options["rule"])
        summaries: list[TargetSummary] = []
        for target in targets:
            for pipeline in self._pipelines(target, options):
                try:
                    summary = warm(
                        rules,
                        target,
                        pipeline,
                        options["output_format"],
                        force=options["force"],
                    )
                except ConversionParameterError as exc:
                    raise CommandError(f"{exc.parameter}: {exc.message}") from exc
                self._print_summary(summary, options["max_failures"])
                summaries.append(summary)
        self._print_table(summaries)

    @staticmethod
    def _pipelines(target: str, options: dict[str, Any]) -> list[str | None]:
        if options["all_pipelines"]:
            return list(TARGETS[target].pipelines)
        pipeline = options["pipeline"]
        if pipeline and pipeline not in TARGETS[target].pipelines and options["all_targets"]:
            return []  # --all-targets --pipeline X: only the targets that offer X
        return [pipeline]

    def _print_summary(self, summary: TargetSummary, limit: int | None) -> None:
        head = (
            f"{summary.target.id} / {summary.pipeline.id} / {summary.output_format}: "
            f"{summary.converted} converted, {summary.failed} failed of {summary.total} rules "
            f"({summary.total - summary.from_cache} converted now, {summary.from_cache} cached, "
            f"{summary.seconds:.1f} s); queries: {summary.verified} verified, "
            f"{summary.fixed} fixed, {summary.invalid} invalid, {summary.unchecked} unchecked"
        )
        clean = not summary.failed and not summary.invalid
        self.stdout.write(self.style.SUCCESS(head) if clean else head)
        shown = summary.failures if limit is None else summary.failures[:limit]
        for failure in shown:
            self.stdout.write(f"  FAILED {failure.rule_id} {failure.title!r}: {failure.error}")
        if len(shown) < len(summary.failures):
            self.stdout.write(f"  ... {len(summary.failures) - len(shown)} more failures")
        invalid = summary.problems if limit is None else summary.problems[:limit]
        for problem in invalid:
            self.stdout.write(
                f"  INVALID {problem.rule_id} {problem.title!r}: does not parse: {problem.error}"
            )
        if len(invalid) < len(summary.problems):
            self.stdout.write(f"  ... {len(summary.problems) - len(invalid)} more invalid")

    def _print_table(self, summaries: list[TargetSummary]) -> None:
        if len(summaries) < 2:
            return
        self.stdout.write("")
        self.stdout.write(f"{'target':<18} {'pipeline':<22} {'converted':>9} {'verified':>8} "
                          f"{'fixed':>5} {'invalid':>7} {'failed':>7} {'rules':>6} "
                          f"{'seconds':>8}")  # fmt: skip
        for s in summaries:
            self.stdout.write(
                f"{s.target.id:<18} {s.pipeline.id:<22} {s.converted:>9} {s.verified:>8} "
                f"{s.fixed:>5} {s.invalid:>7} {s.failed:>7} {s.total:>6} {s.seconds:>8.1f}"
            )
