from django.urls import URLPattern, URLResolver, path

from piaotong.deduction import views

app_name = "deduction"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.received_list, name="received"),
    path("select/", views.bulk_select, name="bulk_select"),
    path("invoices/<uuid:uid>/", views.received_detail, name="detail"),
    path("invoices/<uuid:uid>/book/", views.book, name="book"),
    path("invoices/<uuid:uid>/select/", views.select, name="select"),
    path("invoices/<uuid:uid>/revoke/", views.revoke, name="revoke"),
    path("periods/", views.periods, name="periods"),
    path("periods/<str:period>/", views.period_detail, name="period"),
    path(
        "periods/<str:period>/<str:verb>/",
        views.period_action,
        name="period_action",
    ),
]
