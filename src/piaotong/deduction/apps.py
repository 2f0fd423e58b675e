from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeductionConfig(AppConfig):
    name = "piaotong.deduction"
    label = "deduction"
    verbose_name = _("Deduction")

    def ready(self) -> None:
        from piaotong.deduction import appliers, replay  # noqa: F401  (register on import)
