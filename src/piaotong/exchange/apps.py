from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExchangeConfig(AppConfig):
    name = "piaotong.exchange"
    label = "exchange"
    verbose_name = _("Exchange")

    def ready(self) -> None:
        # Registers the apply-function of InvoiceIssued; other apps register theirs in their
        # own ready() (see exchange.apply).
        from piaotong.exchange import replicas  # noqa: F401
