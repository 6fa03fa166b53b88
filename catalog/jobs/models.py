"""The Job row: what a person sees of a background task (the task result is django-tasks')."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver


class Job(models.Model):
    """One background job: a rule import or a large sandbox file.

    The primary key is a random UUID: for a sandbox job submitted anonymously, knowing the id
    is what grants access to it (``catalog.jobs.services.can_view``). ``status`` is what the
    worker wrote; :func:`catalog.jobs.services.effective_status` also reports a running job
    whose heartbeat went stale as failed ("worker lost").
    """

    class Kind(models.TextChoices):
        IMPORT = "import"
        SANDBOX = "sandbox"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    message = models.TextField(blank=True)
    upload_name = models.CharField(max_length=200, blank=True, help_text="As the user named it")
    upload_path = models.TextField(blank=True, help_text="Read by the worker; removed at the end")
    options = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if self.progress_total <= 0:
            return 0
        return max(0, min(100, int(self.progress_done * 100 / self.progress_total)))

    def update(self, **fields: Any) -> None:
        """Set ``fields`` here and in the row (one UPDATE, nothing else overwritten)."""
        for name, value in fields.items():
            setattr(self, name, value)
        Job.objects.filter(pk=self.pk).update(**fields)


@receiver(post_delete, sender=Job)
def _remove_job_files(sender: type[Job], instance: Job, **kwargs: Any) -> None:
    """A deleted job's folder (upload, results) goes with it, once the deletion commits;
    :func:`catalog.jobs.services.prune_job_files` catches any left behind."""
    from catalog.jobs.services import job_dir

    folder = job_dir(instance)
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
