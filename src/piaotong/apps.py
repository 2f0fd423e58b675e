from django.apps import AppConfig


class PiaotongConfig(AppConfig):
    """The node itself: operator commands (serve, demo) and shared templates."""

    name = "piaotong"
    label = "piaotong"
    verbose_name = "Piaotong"
