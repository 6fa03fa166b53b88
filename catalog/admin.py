"""Staff-only admin: browse the catalog and upload a rules archive to import (as a job)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from catalog.jobs.models import Job
from catalog.jobs.services import create_job
from catalog.models import Exclusion, ImportRun, Indicator, Rule, Tactic, Tag, Technique
from catalog.uploads import is_rule_upload


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
        """The form enqueues an import job and sends the user to its progress page: the
        request never imports (nor forks a parser pool)."""
        if not request.user.is_staff:
            raise PermissionDenied
        form = RuleUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            job = create_job(
                Job.Kind.IMPORT,
                form.cleaned_data["archive"],
                user=request.user,
                options={"prune": form.cleaned_data["prune"], "trigger": "admin"},
            )
            messages.info(request, "Import queued: this page shows its progress and report.")
            return HttpResponseRedirect(reverse("jobs:job-detail", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import Sigma rules",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/catalog/importrun/upload.html", context)


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "status", "upload_name", "created_by", "message"]
    list_filter = ["kind", "status"]
    exclude = ["result"]
