from django.urls import path

from piaotong.ledger import views

app_name = "ledger"
urlpatterns = [
    path("", views.audit_log, name="audit_log"),
]
