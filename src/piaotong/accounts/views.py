"""Web UI of logging in (登录) in two steps, the authenticator pages and the profile (个人设置).

Login: the password step (`login_view`) checks the lockout before the password, then either
logs in (no authenticator), or leaves the session pending for the code step (`login_verify`).
Users whose role requires two-factor login but who have no authenticator yet are logged in and
confined to the set-up page by `accounts.middleware` until they confirm one.
"""

from __future__ import annotations

import math
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from piaotong.accounts import session_state, throttle, twofactor
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import (
    LoginFailure,
    do_begin_totp_setup,
    do_confirm_totp,
    do_disable_totp,
    do_record_login,
    do_regenerate_recovery_codes,
    do_update_profile,
    do_verify_second_factor,
)
from piaotong.accounts.forms import CodeForm, LoginForm, ProfileForm, profile_initial
from piaotong.accounts.models import RecoveryCode, User
from piaotong.lib.errors import RuleViolation


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # behind login_required
    return request.user


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        return target
    return ""


def _go_on(next_url: str, user: User) -> HttpResponse:
    """Where a completed login lands, in the language the user chose in their profile.

    The default language is not forced on a visitor who switched on the login page.
    """
    response = redirect(next_url or settings.LOGIN_REDIRECT_URL)
    if user.language != settings.LANGUAGE_CODE:
        _set_language_cookie(response, user.language)
    return response


def _set_language_cookie(response: HttpResponse, language: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


def _locked_message(until: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return _("Too many failed attempts. Wait %(minutes)s minutes, then try again.") % {
        "minutes": minutes
    }


# --- Login -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        # Not to `next`: a page that sent a logged-in user here (the admin, to a non-staff
        # user) would send them straight back, round and round.
        return redirect(settings.LOGIN_REDIRECT_URL)
    next_url = _next_url(request)
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username, password = form.cleaned_data["username"], form.cleaned_data["password"]
        ip, now = throttle.client_ip(request), timezone.now()
        until = throttle.locked_until(username, ip, now)
        if until is not None:
            do_record_login(username, ip, succeeded=False, reason=LoginFailure.LOCKED, now=now)
            form.add_error(None, _locked_message(until, now))
        else:
            user = authenticate(request, username=username, password=password)
            if isinstance(user, User):
                return _after_password(request, user, next_url, ip, now)
            do_record_login(
                username, ip, succeeded=False, reason=LoginFailure.BAD_CREDENTIALS, now=now
            )
            # The same words whether the username exists or not: no enumeration of accounts.
            form.add_error(
                None, _("Enter a correct username and password. Both are case-sensitive.")
            )
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


def _after_password(
    request: HttpRequest, user: User, next_url: str, ip: str, now: datetime
) -> HttpResponse:
    if twofactor.has_confirmed_device(user):
        session_state.begin_pending(request, user, next_url, now)
        return redirect("accounts:login_verify")
    do_record_login(user.username, ip, succeeded=True, reason="password", user=user, now=now)
    session_state.complete_login(request, user, second_factor=False, now=now)
    if twofactor.is_two_factor_required(user):
        return redirect("accounts:totp_setup")
    return _go_on(next_url, user)


@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    found = session_state.pending_user(request, now)
    if found is None:
        messages.info(request, _("Log in with your password first."))
        return redirect("accounts:login")
    user, next_url = found
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        ip = throttle.client_ip(request)
        until = throttle.locked_until(user.username, ip, now)
        if until is not None:
            do_record_login(user.username, ip, succeeded=False, reason=LoginFailure.LOCKED, now=now)
            form.add_error("code", _locked_message(until, now))
        elif (method := do_verify_second_factor(user, form.cleaned_data["code"], ip, now)) is None:
            form.add_error(
                "code",
                _("That code is not valid. Enter the code your app shows now, or a recovery code."),
            )
        else:
            session_state.complete_login(request, user, second_factor=True, now=now)
            if method == "recovery_code":
                _warn_about_recovery_codes(request, user)
            return _go_on(next_url, user)
    return render(request, "accounts/login_verify.html", {"form": form})


def _warn_about_recovery_codes(request: HttpRequest, user: User) -> None:
    left = RecoveryCode.objects.filter(user=user, used_at=None).count()
    messages.warning(
        request,
        _(
            "You logged in with a recovery code; %(left)s remain. If your phone is lost, turn "
            "two-factor login off and set it up again on a new phone."
        )
        % {"left": left},
    )


# --- Authenticator ---------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def totp_setup(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if twofactor.has_confirmed_device(user):
        messages.info(request, _("Two-factor login is already on."))
        return redirect("accounts:profile")
    actor = actor_for_user(user)
    device = do_begin_totp_setup(actor, user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = do_confirm_totp(actor, user, form.cleaned_data["code"])
        except RuleViolation as violation:
            form.add_error("code", violation.text())
        else:
            session_state.mark_second_factor(request)
            return render(request, "accounts/recovery_codes.html", {"codes": codes})
    uri = twofactor.provisioning_uri(device)
    context = {
        "form": form,
        "secret": twofactor.spaced_secret(device.secret),
        "uri": uri,
        "qr": mark_safe(twofactor.qr_svg(uri)),  # noqa: S308 - SVG generated by segno from our URI
        "required": twofactor.is_two_factor_required(user),
    }
    return render(request, "accounts/totp_setup.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def recovery_codes(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not twofactor.has_confirmed_device(user):
        return redirect("accounts:totp_setup")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = do_regenerate_recovery_codes(
                actor_for_user(user), user, form.cleaned_data["code"]
            )
        except RuleViolation as violation:
            form.add_error("code", violation.text())
        else:
            return render(request, "accounts/recovery_codes.html", {"codes": codes})
    left = RecoveryCode.objects.filter(user=user, used_at=None).count()
    return render(request, "accounts/recovery_codes.html", {"form": form, "left": left})


@login_required
@require_http_methods(["GET", "POST"])
def totp_disable(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not twofactor.has_confirmed_device(user):
        return redirect("accounts:profile")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            do_disable_totp(actor_for_user(user), user, form.cleaned_data["code"])
        except RuleViolation as violation:
            form.add_error("code", violation.text())
        else:
            messages.success(request, _("Two-factor login is off."))
            return redirect("accounts:profile")
    context = {"form": form, "required": twofactor.is_two_factor_required(user)}
    return render(request, "accounts/totp_disable.html", context)


# --- Profile ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = ProfileForm(request.POST or None, initial=profile_initial(user))
    if request.method == "POST" and form.is_valid():
        try:
            do_update_profile(actor_for_user(user), user, **form.cleaned_data)
        except RuleViolation as violation:
            form.add_error(violation.field, violation.text())
        else:
            translation.activate(user.language)
            messages.success(request, _("Your profile is saved."))
            response = redirect("accounts:profile")
            _set_language_cookie(response, user.language)
            return response
    context = {
        "form": form,
        "has_totp": twofactor.has_confirmed_device(user),
        "required": twofactor.is_two_factor_required(user),
        "recovery_left": RecoveryCode.objects.filter(user=user, used_at=None).count(),
    }
    return render(request, "accounts/profile.html", context)
