from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExchangeConfig(AppConfig):
    name = "piaotong.exchange"
    label = "exchange"
    verbose_name = _("Exchange")
    # Apps register their apply-functions in their own ready() (see exchange.apply); the
    # replica of an InvoiceIssued is the invoices app's (invoices.replicas).
