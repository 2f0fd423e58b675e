"""Language choice: the UI is zh-Hans unless the user switched (the language cookie).

Django's LocaleMiddleware would follow the browser's Accept-Language first, so an English
browser would never see the Chinese default. API clients still choose with Accept-Language
(every API error also carries both languages).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

SUPPORTED = {code for code, _ in settings.LANGUAGES}


class PreferredLanguageMiddleware(LocaleMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        if request.path.startswith("/api/"):
            super().process_request(request)
            return
        language = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        translation.activate(language if language in SUPPORTED else settings.LANGUAGE_CODE)
        request.LANGUAGE_CODE = translation.get_language()
