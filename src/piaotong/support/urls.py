from django.urls import URLPattern, URLResolver, path

from piaotong.support import views

app_name = "support"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.ticket_list, name="list"),
    path("open", views.ticket_open, name="open"),
    path("<str:uid>/", views.ticket_detail, name="detail"),
]
