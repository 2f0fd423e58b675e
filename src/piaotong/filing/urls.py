from django.urls import URLPattern, URLResolver, path

from piaotong.filing import views

app_name = "filing"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.overview, name="overview"),
    path("<str:period>/", views.return_page, name="period"),
    path("<str:period>/invoices/", views.drill, name="drill"),
    path("<str:period>/v<int:version>.<str:fmt>", views.export, name="export"),
    path("<str:period>/<str:verb>/", views.step, name="step"),
]
