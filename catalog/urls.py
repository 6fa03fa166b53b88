"""Root URLs: pages (namespace ``catalog``), API (namespace ``api``), sandbox, admin."""

from django.contrib import admin
from django.urls import include, path

from catalog.health import healthz
from catalog.sandbox_views import SandboxAPIView, sandbox_page

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("sandbox/", sandbox_page, name="sandbox"),
    path("api/sandbox/", SandboxAPIView.as_view(), name="api-sandbox"),
    # Before api/: the API router would otherwise claim /api/rules/<id>/convert/.
    path("", include("catalog.conversion_urls")),
    path("api/", include("catalog.api.urls")),
    path("", include("catalog.web_urls")),
]
