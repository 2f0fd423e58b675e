from django.contrib.auth import views as auth_views
from django.urls import path

from piaotong.accounts import views, views_invitations, views_registration, views_roles

app_name = "accounts"
urlpatterns = [
    # Two-step login, the authenticator and the profile (accounts.views).
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.login_verify, name="login_verify"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", views.profile, name="profile"),
    path("two-factor/setup/", views.totp_setup, name="totp_setup"),
    path("two-factor/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("two-factor/disable/", views.totp_disable, name="totp_disable"),
    # Registration of organisations and its review by the tax authority.
    path("register/", views_registration.register, name="register"),
    path("register/done/", views_registration.register_done, name="register_done"),
    path(
        "register/<int:organisation_id>/reapply/",
        views_registration.reapply,
        name="register_reapply",
    ),
    path("registrations/", views_registration.registrations, name="registrations"),
    path(
        "registrations/<int:organisation_id>/",
        views_registration.registration_detail,
        name="registration_detail",
    ),
    path(
        "registrations/<int:organisation_id>/approve/",
        views_registration.registration_approve,
        name="registration_approve",
    ),
    path(
        "registrations/<int:organisation_id>/reject/",
        views_registration.registration_reject,
        name="registration_reject",
    ),
    path(
        "registrations/documents/<int:document_id>/",
        views_registration.registration_document,
        name="registration_document",
    ),
    # Permission changes under maker-checker and the periodic access review.
    path("roles/", views_roles.roles_home, name="roles"),
    path("roles/<int:organisation_id>/", views_roles.role_requests_pending, name="role_requests"),
    path("roles/<int:organisation_id>/new/", views_roles.role_request_new, name="role_request_new"),
    path(
        "roles/<int:organisation_id>/history/",
        views_roles.role_request_history,
        name="role_history",
    ),
    path("roles/<int:organisation_id>/review/", views_roles.access_review, name="access_review"),
    path(
        "roles/<int:organisation_id>/review.csv",
        views_roles.access_review_csv,
        name="access_review_csv",
    ),
    path(
        "roles/<int:organisation_id>/review/revoke-dormant/",
        views_roles.revoke_dormant,
        name="revoke_dormant",
    ),
    path(
        "roles/requests/<int:pk>/approve/",
        views_roles.role_request_approve,
        name="role_request_approve",
    ),
    path(
        "roles/requests/<int:pk>/reject/",
        views_roles.role_request_reject,
        name="role_request_reject",
    ),
    path(
        "roles/requests/<int:pk>/withdraw/",
        views_roles.role_request_withdraw,
        name="role_request_withdraw",
    ),
    # Invitations of new users, under the same maker-checker, and their public acceptance.
    path(
        "roles/<int:organisation_id>/invitations/",
        views_invitations.invitations_page,
        name="invitations",
    ),
    path(
        "invitations/<int:pk>/approve/",
        views_invitations.invitation_approve,
        name="invitation_approve",
    ),
    path(
        "invitations/<int:pk>/reject/",
        views_invitations.invitation_reject,
        name="invitation_reject",
    ),
    path(
        "invitations/<int:pk>/withdraw/",
        views_invitations.invitation_withdraw,
        name="invitation_withdraw",
    ),
    path(
        "invitations/accept/<str:token>/",
        views_invitations.invitation_accept,
        name="invitation_accept",
    ),
]
