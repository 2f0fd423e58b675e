from django.urls import path

from piaotong.verification import views

app_name = "verification"
urlpatterns = [
    path("", views.verify_page, name="verify"),
    path("bulk/", views.bulk_page, name="bulk"),
    path("bulk/<uuid:uid>/", views.bulk_result, name="bulk_result"),
    path("bulk/<uuid:uid>/export.xlsx", views.bulk_export, name="bulk_export"),
    path("deliver/<str:number>", views.deliver_page, name="deliver"),
    path("deliveries/", views.delivery_log, name="deliveries"),
    path("d/<str:code>", views.download, name="download"),
]
