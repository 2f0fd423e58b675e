"""Root URLs: the web UI, the JSON API, health and readiness."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from piaotong import health
from piaotong.api.api import api
from piaotong.exchange import views as exchange_views

urlpatterns = [
    path("", include("piaotong.invoices.urls")),
    path("accounts/", include("piaotong.accounts.urls")),
    path("audit/", include("piaotong.ledger.urls")),
    path("documents/", include("piaotong.documents.urls")),
    path("verify/", include("piaotong.verification.urls")),
    path("deduction/", include("piaotong.deduction.urls")),
    path("reconciliation/", include("piaotong.reconciliation.urls")),
    path("filing/", include("piaotong.filing.urls")),
    path("sync/", include("piaotong.exchange.urls")),
    path("support/", include("piaotong.support.urls")),
    path("api/v1/", api.urls),
    # The admin's own login form would skip the second factor: it sends people to ours.
    path(
        "admin/login/",
        RedirectView.as_view(pattern_name="accounts:login", query_string=True),
    ),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", exchange_views.metrics),
]
