"""`piaotong apikey create|list|revoke`: API keys for ERP clients, scoped to one organisation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.accounts.access import Actor
from piaotong.accounts.actions import do_create_api_key, do_revoke_api_key
from piaotong.accounts.choices import ApiScope
from piaotong.accounts.models import ApiKey, Organisation


class Command(BaseCommand):
    help = "Create, list or revoke organisation API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="Create a key; its token is printed once")
        create.add_argument("--org", required=True, metavar="TAX_ID")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--scopes",
            default="invoices:read,invoices:write",
            help=f"Comma-separated, from: {', '.join(ApiScope.values)}",
        )
        listing = sub.add_parser("list", help="List keys (never their secrets)")
        listing.add_argument("--org", metavar="TAX_ID")
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['verb']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        organisation = Organisation.objects.filter(tax_id=options["org"].strip().upper()).first()
        if organisation is None:
            raise CommandError(f"No organisation with tax id {options['org']} on this node.")
        names = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = [s for s in names if s not in ApiScope.values]
        if unknown or not names:
            raise CommandError(
                f"Unknown scopes {unknown}; choose from {', '.join(ApiScope.values)}."
            )
        api_key, token = do_create_api_key(
            Actor(), organisation, options["name"], [ApiScope(s) for s in names]
        )
        self.stdout.write(
            f"Created key {api_key.prefix} for {organisation.name} with {', '.join(names)}."
        )
        self.stdout.write("Token (shown only now; store it in the client's secret store):")
        self.stdout.write(token)

    def _list(self, options: dict[str, Any]) -> None:
        keys = ApiKey.objects.select_related("organisation").order_by("created_at")
        if options["org"]:
            keys = keys.filter(organisation__tax_id=options["org"].strip().upper())
        for key in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            self.stdout.write(
                f"{key.prefix}  {key.organisation.tax_id}  {key.name}  {','.join(key.scopes)}  {state}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        api_key = ApiKey.objects.filter(prefix=options["prefix"]).first()
        if api_key is None:
            raise CommandError(f"No key with prefix {options['prefix']}.")
        do_revoke_api_key(Actor(), api_key)
        self.stdout.write(f"Revoked {api_key.prefix}.")
