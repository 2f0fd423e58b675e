from django.urls import URLPattern, URLResolver, path

from piaotong.documents import views

app_name = "documents"
urlpatterns: list[URLPattern | URLResolver] = [
    path("<str:number>/print", views.print_view, name="print"),
    path("<str:number>/<str:fmt>", views.download, name="download"),
]
