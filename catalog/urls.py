"""Root URLs: pages (namespaces ``catalog`` and ``conversion``), the API (namespace ``api``,
every JSON endpoint), the sandbox page, admin."""

from django.contrib import admin
from django.urls import include, path

from catalog.health import healthz
from catalog.sandbox_views import sandbox_page

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("sandbox/", sandbox_page, name="sandbox"),
    path("api/", include("catalog.api.urls")),
    path("jobs/", include("catalog.jobs.urls")),
    path("", include("catalog.conversion_urls")),
    path("", include("catalog.web_urls")),
]
