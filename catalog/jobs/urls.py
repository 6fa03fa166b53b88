"""Job pages (namespace ``jobs``)."""

from django.urls import path

from catalog.jobs import views

app_name = "jobs"

urlpatterns = [
    path("<uuid:job_id>/", views.job_page, name="job-detail"),
    path("<uuid:job_id>/cancel/", views.cancel_page, name="job-cancel"),
    path("<uuid:job_id>/matches.csv", views.export_csv, name="job-export-csv"),
    path("<uuid:job_id>/matches.json", views.export_json, name="job-export-json"),
]
