"""Root URLs: pages (namespaces ``catalog`` and ``conversion``), the API (namespace ``api``,
every JSON endpoint), the sandbox page, admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from catalog.health import healthz
from catalog.sandbox_views import sandbox_page
from catalog.views.workbench import delete_draft, save_draft, workbench_page

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("sandbox/", sandbox_page, name="sandbox"),
    # Signing in only serves saved workbench drafts; accounts are made by an admin.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, next_page="workbench"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="workbench"), name="logout"),
    path("workbench/", workbench_page, name="workbench"),
    path("workbench/drafts/", save_draft, name="workbench-save"),
    path("workbench/drafts/<int:pk>/delete/", delete_draft, name="workbench-delete"),
    path("api/", include("catalog.api.urls")),
    path("jobs/", include("catalog.jobs.urls")),
    path("", include("catalog.conversion_urls")),
    path("", include("catalog.web_urls")),
]
