"""Field encryption tokens and keyrings, without a database."""

from __future__ import annotations

import pytest

from piaotong.lib.fieldcrypto import (
    Keyring,
    KeyringError,
    TamperedTokenError,
    UnknownKeyError,
    generate_key_line,
    token_key_id,
)

CONTEXT = "accounts.organisation.bank_account"
OLD = generate_key_line("old")
NEW = generate_key_line("new")


def test_it_round_trips_unicode_and_randomises_every_token() -> None:
    ring = Keyring.parse(OLD)
    first, second = (
        ring.encrypt("张三 13800000000", CONTEXT),
        ring.encrypt("张三 13800000000", CONTEXT),
    )
    assert first != second
    assert first.startswith("pt1:old:") and "13800000000" not in first
    assert ring.decrypt(first, CONTEXT) == ring.decrypt(second, CONTEXT) == "张三 13800000000"


def test_it_encrypts_with_the_first_key_and_decrypts_with_any() -> None:
    old_token = Keyring.parse(OLD).encrypt("6222", CONTEXT)
    rotated = Keyring.parse(f"{NEW},{OLD}")
    assert rotated.current_id == "new"
    assert rotated.decrypt(old_token, CONTEXT) == "6222"
    assert not rotated.is_current(old_token)
    fresh = rotated.encrypt(rotated.decrypt(old_token, CONTEXT), CONTEXT)
    assert rotated.is_current(fresh) and token_key_id(fresh) == "new"
    assert Keyring.parse(NEW).decrypt(fresh, CONTEXT) == "6222"


def test_it_names_the_key_id_a_token_needs() -> None:
    token = Keyring.parse(OLD).encrypt("6222", CONTEXT)
    with pytest.raises(UnknownKeyError, match=r"needs field key id 'old'.*it has new"):
        Keyring.parse(NEW, source="PIAOTONG_FIELD_KEYS").decrypt(token, CONTEXT)


def test_it_refuses_a_token_under_a_different_key_with_the_same_id() -> None:
    token = Keyring.parse(OLD).encrypt("6222", CONTEXT)
    impostor = Keyring.parse(generate_key_line("old"))
    with pytest.raises(TamperedTokenError):
        impostor.decrypt(token, CONTEXT)


@pytest.mark.parametrize("position", [8, 20, "last"])
def test_it_refuses_a_tampered_token(position: int | str) -> None:
    ring = Keyring.parse(OLD)
    token = ring.encrypt("6222 0200 1234", CONTEXT)
    position = len(token) - 1 if position == "last" else int(position)
    altered = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    with pytest.raises(TamperedTokenError, match="refusing it"):
        ring.decrypt(altered, CONTEXT)


def test_it_refuses_a_truncated_or_garbled_token() -> None:
    ring = Keyring.parse(OLD)
    for token in ["pt1:old:", "pt1:old:!!!!", "pt1:old", "13800000000"]:
        with pytest.raises(TamperedTokenError):
            ring.decrypt(token, CONTEXT)


def test_it_refuses_a_token_moved_to_another_column() -> None:
    ring = Keyring.parse(OLD)
    token = ring.encrypt("zhang@example.com", "invoices.invoice.buyer_email")
    with pytest.raises(TamperedTokenError, match=r"invoices\.invoice\.buyer_phone"):
        ring.decrypt(token, "invoices.invoice.buyer_phone")


def test_it_refuses_a_token_whose_key_id_was_edited() -> None:
    ring = Keyring.parse(f"{NEW},{OLD}")
    token = ring.encrypt("6222", CONTEXT)
    with pytest.raises(TamperedTokenError):
        ring.decrypt(token.replace("pt1:new:", "pt1:old:"), CONTEXT)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("just-a-key", "<key id>:<base64 key>"),
        ("k1:c2hvcnQ=", "base64 of 32 bytes"),
        ("k1:not base64!", "base64 of 32 bytes"),
        ("bad id:" + "A" * 44, "key id 'bad id'"),
        (f"{OLD},{OLD}", "twice"),
    ],
    ids=["empty", "no-colon", "short-key", "not-base64", "bad-key-id", "duplicate"],
)
def test_it_refuses_a_malformed_keyring(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        Keyring.parse(text, source="PIAOTONG_FIELD_KEYS")


def test_it_never_shows_key_material_in_a_repr() -> None:
    ring = Keyring.parse(f"{NEW},{OLD}")
    secret = OLD.split(":", 1)[1]
    assert secret not in repr(ring) and secret not in repr(ring.current)
    assert repr(ring) == "Keyring(current='new', key_ids=('new', 'old'))"
