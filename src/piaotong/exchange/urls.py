from django.urls import URLPattern, URLResolver, path

from piaotong.exchange import views, views_trace

app_name = "exchange"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.dashboard, name="dashboard"),
    path("metrics", views.metrics, name="metrics"),
    path("trace/", views_trace.trace_page, name="trace"),
]
