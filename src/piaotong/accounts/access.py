"""Who is acting (操作人) and within which organisations: the one place permissions are decided.

An `Actor` is a logged-in user or an API key, with the roles it holds per organisation. Views,
API endpoints and commands build an actor and ask it; querysets are scoped through it, so a user
of organisation B never learns that organisation A's rows exist (404, not 403).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from piaotong.accounts.choices import ApiScope, OrganisationKind, OrganisationStatus, Role
from piaotong.accounts.models import ApiKey, Organisation, QualificationDocument, User
from piaotong.accounts.permissions import Action, role_allows

API_SCOPE_ACTIONS: dict[ApiScope, frozenset[Action]] = {
    ApiScope.INVOICES_READ: frozenset({Action.VIEW_INVOICES}),
    ApiScope.INVOICES_WRITE: frozenset(
        {Action.VIEW_INVOICES, Action.DRAFT_INVOICE, Action.ISSUE_INVOICE}
    ),
    ApiScope.INVOICES_DELIVER: frozenset({Action.VIEW_INVOICES, Action.DELIVER_INVOICE}),
    ApiScope.INVOICES_VERIFY: frozenset({Action.VERIFY_INVOICES, Action.TRACE_INVOICE}),
    ApiScope.PURCHASES_READ: frozenset({Action.VIEW_PURCHASES}),
    ApiScope.PURCHASES_RECONCILE: frozenset({Action.VIEW_PURCHASES, Action.RECONCILE_PURCHASES}),
    # Voiding, red-letter, deduction and filing are deliberately not open to API keys: they are
    # a finance manager's acts behind a second factor (docs/security.md).
}


@dataclass
class Actor:
    """A user or API key with its grants: {organisation id: actions allowed there}."""

    user: User | None = None
    api_key: ApiKey | None = None
    grants: dict[int, frozenset[Action]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name printed as 开票人 and recorded in the audit log."""
        if self.user is not None:
            return self.user.get_full_name() or self.user.username
        if self.api_key is not None:
            return f"API:{self.api_key.name}"
        return "system"

    @property
    def principal(self) -> str:
        """A stable identifier for idempotency keys and audit rows."""
        if self.user is not None:
            return f"user:{self.user.pk}"
        if self.api_key is not None:
            return f"apikey:{self.api_key.pk}"
        return "system"

    def can(self, action: Action, organisation_id: int) -> bool:
        return action in self.grants.get(organisation_id, frozenset())

    def organisation_ids(self, action: Action = Action.VIEW_INVOICES) -> list[int]:
        return [org_id for org_id, actions in self.grants.items() if action in actions]


def actor_for_user(user: User) -> Actor:
    roles: dict[int, set[Action]] = defaultdict(set)
    for organisation_id, role in user.memberships.values_list("organisation_id", "role"):
        roles[organisation_id].update(a for a in Action if role_allows(role, a))
    return Actor(user=user, grants={org: frozenset(actions) for org, actions in roles.items()})


def actor_for_request(request: HttpRequest) -> Actor | None:
    """The logged-in user's actor, built once per request (views and templates share it)."""
    cached: Actor | None = getattr(request, "_piaotong_actor", None)
    if cached is None and isinstance(getattr(request, "user", None), User):
        cached = actor_for_user(request.user)  # type: ignore[arg-type]
        request._piaotong_actor = cached  # type: ignore[attr-defined]
    return cached


def actor_for_api_key(api_key: ApiKey) -> Actor:
    actions: set[Action] = set()
    for scope in api_key.scopes:
        actions |= API_SCOPE_ACTIONS.get(ApiScope(scope), frozenset())
    return Actor(api_key=api_key, grants={api_key.organisation_id: frozenset(actions)})


def system_actor(organisations: Iterable[Organisation]) -> Actor:
    """Full rights on the given organisations: for the CLI run by the node's operator."""
    everything = frozenset(Action)
    return Actor(grants={org.pk: everything for org in organisations})


def roles_of(user: User, organisation: Organisation) -> set[Role]:
    return {
        Role(r)
        for r in user.memberships.filter(organisation=organisation).values_list("role", flat=True)
    }


def get_organisation_for_actor(actor: Actor, organisation_id: int, action: Action) -> Organisation:
    """The organisation if the actor may do `action` there; otherwise 404 (never reveal it)."""
    if not actor.can(action, organisation_id):
        raise Http404("No such organisation")
    return Organisation.objects.get(pk=organisation_id)


# --- Registration review (税务机关审核) ---------------------------------------------------------


def reviewing_regions(actor: Actor) -> set[str]:
    """Regions whose registrations the actor reviews: those of the approved tax bureaus where
    they hold a role allowing it. The same role in a taxpayer's organisation reviews nothing."""
    bureau_ids = actor.organisation_ids(Action.REVIEW_REGISTRATION)
    if actor.user is None or not bureau_ids:
        return set()
    return set(
        Organisation.objects.filter(
            pk__in=bureau_ids,
            kind=OrganisationKind.TAX_BUREAU,
            status=OrganisationStatus.APPROVED,
        ).values_list("region", flat=True)
    )


def registrations_for_actor(actor: Actor) -> QuerySet[Organisation]:
    """Taxpayers of the actor's review regions, except organisations the actor belongs to."""
    regions = reviewing_regions(actor)
    if not regions:
        return Organisation.objects.none()
    return Organisation.objects.filter(kind=OrganisationKind.TAXPAYER, region__in=regions).exclude(
        memberships__user=actor.user
    )


def get_registration_for_actor(actor: Actor, organisation_id: int) -> Organisation:
    """An organisation whose registration the actor reviews; otherwise 404."""
    found = registrations_for_actor(actor).filter(pk=organisation_id).first()
    if found is None:
        raise Http404("No such registration")
    return found


def get_document_for_actor(actor: Actor, document_id: int) -> QualificationDocument:
    """A qualification document of a registration the actor reviews; otherwise 404."""
    found = (
        QualificationDocument.objects.filter(
            pk=document_id, organisation__in=registrations_for_actor(actor)
        )
        .select_related("organisation")
        .first()
    )
    if found is None:
        raise Http404("No such document")
    return found
