"""Root URLs: pages (namespace ``catalog``), API (namespace ``api``), admin."""

from django.contrib import admin
from django.urls import include, path

from catalog.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("catalog.api.urls")),
    path("", include("catalog.web_urls")),
]
