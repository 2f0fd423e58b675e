from django.urls import path

from piaotong.invoices import views, views_authority, views_exports, views_redletter

app_name = "invoices"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("invoices/", views.invoice_list, name="list"),
    path("invoices/export.xlsx", views.export_invoices, name="export"),
    path("invoices/exports/", views_exports.export_new, name="export_new"),
    path("invoices/exports/<uuid:uid>/", views_exports.export_job, name="export_job"),
    path(
        "invoices/exports/<uuid:uid>/download",
        views_exports.export_download,
        name="export_download",
    ),
    path(
        "invoices/exports/<uuid:uid>/restart/", views_exports.export_restart, name="export_restart"
    ),
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
    path("invoices/<uuid:uid>/void/", views_redletter.void, name="void"),
    path("invoices/<uuid:uid>/red-letter/", views_redletter.new_request, name="red_letter_new"),
    path("invoices/<uuid:uid>/authority/", views_authority.invoice_flags, name="authority"),
    path("authority-flags/", views_authority.flag_list, name="authority_list"),
    path("red-letter/", views_redletter.request_list, name="red_letters"),
    path("red-letter/<uuid:uid>/", views_redletter.request_detail, name="red_letter_detail"),
    path("red-letter/<uuid:uid>/confirm/", views_redletter.confirm, name="red_letter_confirm"),
    path("red-letter/<uuid:uid>/refuse/", views_redletter.refuse, name="red_letter_refuse"),
    path("red-letter/<uuid:uid>/withdraw/", views_redletter.withdraw, name="red_letter_withdraw"),
]
