"""`piaotong flag NUMBER --flag out_of_control|abnormal --reason TEXT --as USERNAME`: a tax
officer flags an issued invoice 失控 or 异常 at the hub; `--clear` lifts the flag.

The actor is always a named user (`--as`), whose tax-officer role in a tax bureau covering the
seller's region is checked as in the web UI; the command runs only on the hub node. The flag
reaches the seller's and the buyer's nodes through the exchange (docs/exchange.md).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import User
from piaotong.invoices import authority
from piaotong.invoices.forms import violations_of
from piaotong.lib.errors import RuleViolation, RuleViolations


class Command(BaseCommand):
    help = "Flag an issued invoice 失控 or 异常 (or --clear the flag) as a tax officer, at the hub."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number", help="The 20-digit invoice number")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument(
            "--flag",
            choices=sorted(authority.FLAGS),
            help="out_of_control (失控) or abnormal (异常)",
        )
        what.add_argument("--clear", action="store_true", help="Clear the invoice's flag")
        parser.add_argument("--reason", required=True, help="Why (shown to the parties)")
        parser.add_argument(
            "--as", dest="as_user", required=True, metavar="USERNAME", help="The tax officer"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["as_user"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['as_user']!r} on this node.")
        actor = actor_for_user(user)
        try:
            scope = authority.require_flag_scope(actor)
            invoice = authority.get_flaggable_invoice(scope, options["number"])
            if options["clear"]:
                invoice = authority.do_clear_authority_flag(actor, invoice, options["reason"])
            else:
                invoice = authority.do_set_authority_flag(
                    actor, invoice, options["flag"], options["reason"]
                )
        except PermissionDenied:
            raise CommandError(
                f"{user.username} is not a tax officer of a tax bureau on this node."
            ) from None
        except Http404:
            raise CommandError(
                f"No issued invoice {options['number']} of {user.username}'s regions on this node."
            ) from None
        except (RuleViolation, RuleViolations) as error:
            raise CommandError(
                "; ".join(f"{v.field}: {v.text()}" for v in violations_of(error))
            ) from None
        if invoice.authority_flag:
            mark = invoice.get_authority_flag_display()
            self.stdout.write(self.style.SUCCESS(f"{invoice.number} flagged {mark}."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{invoice.number}: flag cleared."))
