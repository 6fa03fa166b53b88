"""Staff-only admin: browse the catalog and upload a rules archive to import."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from catalog.models import Exclusion, ImportRun, Indicator, Rule, Tactic, Tag, Technique
from catalog.services import ImportAborted, ImportReport
from catalog.uploads import import_upload, is_rule_upload


class ReadOnlyAdmin(admin.ModelAdmin):
    """Catalog rows are written only by the importer, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Rule)
class RuleAdmin(ReadOnlyAdmin):
    list_display = ["title", "rule_id", "level", "status", "product", "category", "service"]
    list_filter = ["level", "status", "rule_set", "product"]
    search_fields = ["title", "rule_id", "description"]
    exclude = ["search_vector"]


class PredicateAdmin(ReadOnlyAdmin):
    """Indicators and exclusions: one identity (field, kind, value) and its rule count."""

    list_display = ["field", "kind", "value", "rule_count"]
    list_filter = ["kind"]
    search_fields = ["field", "value"]


admin.site.register(Indicator, PredicateAdmin)
admin.site.register(Exclusion, PredicateAdmin)


admin.site.register(Tag, ReadOnlyAdmin)
admin.site.register(Tactic, ReadOnlyAdmin)
admin.site.register(Technique, ReadOnlyAdmin)


class RuleUploadForm(forms.Form):
    archive = forms.FileField(
        help_text="A .zip or .tar.gz archive of Sigma rules, or a single .yml rule."
    )
    prune = forms.BooleanField(
        required=False, help_text="Delete catalog rules that are not in this upload."
    )

    def clean_archive(self) -> Any:
        upload = self.cleaned_data["archive"]
        if not is_rule_upload(upload.name):
            raise forms.ValidationError("Upload a .zip, .tar.gz or .yml file.")
        if upload.size > settings.RULE_ARCHIVE_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the limit is "
                f"{settings.RULE_ARCHIVE_MAX_BYTES:,}."
            )
        return upload


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at", "trigger", "status", "created", "updated", "unchanged", "failed", "pruned",
        "seconds",
    ]  # fmt: skip
    list_filter = ["status", "trigger"]
    change_list_template = "admin/catalog/importrun/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "upload/",
                self.admin_site.admin_view(self.upload_view),
                name="catalog_importrun_upload",
            ),
            *super().get_urls(),
        ]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied
        form = RuleUploadForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            report = _import_upload(form.cleaned_data["archive"], form.cleaned_data["prune"])
            if report is None:
                messages.error(request, "The import failed; the catalog is unchanged.")
                return HttpResponseRedirect(reverse("admin:catalog_importrun_changelist"))
            level = messages.WARNING if report.failed else messages.SUCCESS
            messages.add_message(request, level, f"Import finished: {report.summary()}")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import Sigma rules",
            "form": form,
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/catalog/importrun/upload.html", context)


def _import_upload(upload: Any, prune: bool) -> ImportReport | None:
    """The import's report, or None when it was aborted (the catalog is then unchanged)."""
    try:
        return import_upload(upload, prune=prune, trigger="admin")
    except ImportAborted:
        return None
