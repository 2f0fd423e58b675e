from django.urls import path

from piaotong.invoices import views

app_name = "invoices"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("invoices/", views.invoice_list, name="list"),
    path("invoices/export.xlsx", views.export_invoices, name="export"),
    path("invoices/new/", views.new_invoice, name="new"),
    path("invoices/new/preview/", views.preview, name="preview"),
    path("invoices/new/line/", views.add_line, name="add_line"),
    path("invoices/new/rates/", views.line_rates, name="line_rates"),
    path("invoices/tax-codes/", views.tax_codes, name="tax_codes"),
    path("invoices/review/", views.review_queue, name="review"),
    path("invoices/<uuid:uid>/", views.invoice_detail, name="detail"),
    path("invoices/<uuid:uid>/edit/", views.edit_draft, name="edit"),
    path("invoices/<uuid:uid>/submit/", views.submit_draft, name="submit"),
    path("invoices/<uuid:uid>/issue/", views.issue_draft, name="issue"),
    path("invoices/<uuid:uid>/approve/", views.approve, name="approve"),
    path("invoices/<uuid:uid>/reject/", views.reject, name="reject"),
]
