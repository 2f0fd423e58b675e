from django.urls import URLPattern, URLResolver

app_name = "reconciliation"
urlpatterns: list[URLPattern | URLResolver] = []
