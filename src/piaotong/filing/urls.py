from django.urls import URLPattern, URLResolver

app_name = "filing"
urlpatterns: list[URLPattern | URLResolver] = []
