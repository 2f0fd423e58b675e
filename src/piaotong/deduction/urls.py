from django.urls import URLPattern, URLResolver

app_name = "deduction"
urlpatterns: list[URLPattern | URLResolver] = []
