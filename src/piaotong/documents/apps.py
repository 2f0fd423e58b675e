from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DocumentsConfig(AppConfig):
    name = "piaotong.documents"
    label = "documents"
    verbose_name = _("Documents")

    def ready(self) -> None:
        from piaotong.documents import signals  # noqa: F401 - connects the receiver
