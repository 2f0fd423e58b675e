from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InvoicesConfig(AppConfig):
    name = "piaotong.invoices"
    label = "invoices"
    verbose_name = _("Invoices")

    def ready(self) -> None:
        from piaotong.invoices import appliers, replicas  # noqa: F401  (register on import)
