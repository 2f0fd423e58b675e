from django.urls import URLPattern, URLResolver, path

from piaotong.reconciliation import views

app_name = "reconciliation"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.index, name="index"),
    path("<uuid:uid>/", views.job_detail, name="job"),
    path("<uuid:uid>/progress/", views.job_progress, name="progress"),
    path("<uuid:uid>/export.xlsx", views.export, name="export"),
    path("<uuid:uid>/deduct/", views.deduct, name="deduct"),
    path("<uuid:uid>/items/<int:item_id>/match/", views.match, name="match"),
    path("<uuid:uid>/items/<int:item_id>/unmatch/", views.unmatch, name="unmatch"),
]
