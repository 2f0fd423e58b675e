"""Choices of the user center: taxpayer kinds (纳税人类型) and roles (角色)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class TaxpayerKind(models.TextChoices):
    GENERAL = "general", _("General taxpayer (一般纳税人)")
    SMALL_SCALE = "small_scale", _("Small-scale taxpayer (小规模纳税人)")


class OrganisationKind(models.TextChoices):
    """A taxpayer issues and receives invoices; a tax bureau (税务机关) supervises taxpayers."""

    TAXPAYER = "taxpayer", _("Taxpayer (纳税人)")
    TAX_BUREAU = "tax_bureau", _("Tax bureau (税务机关)")
    PLATFORM = "platform", _("Platform operator (平台运营方)")


class OrganisationStatus(models.TextChoices):
    """Where an organisation's registration (注册申请) stands; only approved ones issue."""

    PENDING = "pending", _("Awaiting review (待审核)")
    APPROVED = "approved", _("Approved (已通过)")
    REJECTED = "rejected", _("Rejected (已驳回)")


class Role(models.TextChoices):
    """Roles a user holds within one organisation. Least privilege: each grants only its duty."""

    CLERK = "clerk", _("Issuing clerk (开票员)")
    REVIEWER = "reviewer", _("Reviewer (复核员)")
    FINANCE_MANAGER = "finance_manager", _("Finance manager (财务主管)")
    AUDITOR = "auditor", _("Auditor (审计员)")
    ORG_ADMIN = "org_admin", _("Organisation admin (单位管理员)")
    TAX_OFFICER = "tax_officer", _("Tax officer (税务人员)")
    PLATFORM_ADMIN = "platform_admin", _("Platform admin (平台管理员)")


class ApiScope(models.TextChoices):
    INVOICES_READ = "invoices:read", _("Read invoices")
    INVOICES_WRITE = "invoices:write", _("Create and issue invoices")
    INVOICES_DELIVER = "invoices:deliver", _("Send invoices to buyers")
    INVOICES_VERIFY = "invoices:verify", _("Verify invoices in bulk")
    PURCHASES_READ = "purchases:read", _("Read received invoices")
    PURCHASES_RECONCILE = "purchases:reconcile", _("Import and reconcile purchase records")


class RoleChange(models.TextChoices):
    """What a permission change request (权限变更申请) asks for."""

    GRANT = "grant", _("Grant")
    REVOKE = "revoke", _("Revoke")


class RoleChangeStatus(models.TextChoices):
    """Where a permission change request stands. Every decision is final."""

    PENDING = "pending", _("Pending approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")


ROLE_CHANGE_TRANSITIONS: dict[RoleChangeStatus, frozenset[RoleChangeStatus]] = {
    RoleChangeStatus.PENDING: frozenset(
        {RoleChangeStatus.APPROVED, RoleChangeStatus.REJECTED, RoleChangeStatus.WITHDRAWN}
    ),
    RoleChangeStatus.APPROVED: frozenset(),
    RoleChangeStatus.REJECTED: frozenset(),
    RoleChangeStatus.WITHDRAWN: frozenset(),
}

# Roles an organisation's admins manage among themselves. The tax officer belongs to the
# authority side and is never granted by the taxpayer it supervises; a role added later stays
# outside this set until someone decides otherwise.
ORGANISATION_ROLES: frozenset[Role] = frozenset(
    {Role.CLERK, Role.REVIEWER, Role.FINANCE_MANAGER, Role.AUDITOR, Role.ORG_ADMIN}
)


class InvitationStatus(models.TextChoices):
    """Where an invitation (邀请) stands: approved means the acceptance link was issued."""

    PENDING = "pending", _("Pending approval")
    APPROVED = "approved", _("Approved: link issued")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    EXPIRED = "expired", _("Expired")


INVITATION_TRANSITIONS: dict[InvitationStatus, frozenset[InvitationStatus]] = {
    InvitationStatus.PENDING: frozenset(
        {InvitationStatus.APPROVED, InvitationStatus.REJECTED, InvitationStatus.WITHDRAWN}
    ),
    InvitationStatus.APPROVED: frozenset({InvitationStatus.ACCEPTED, InvitationStatus.EXPIRED}),
    InvitationStatus.ACCEPTED: frozenset(),
    InvitationStatus.REJECTED: frozenset(),
    InvitationStatus.WITHDRAWN: frozenset(),
    InvitationStatus.EXPIRED: frozenset(),
}
