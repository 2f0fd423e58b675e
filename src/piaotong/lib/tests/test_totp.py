"""One-time passwords: the RFC test vectors, the verification window and replay refusal."""

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from piaotong.lib.totp import (
    Algorithm,
    decode_secret,
    generate_secret,
    hotp,
    provisioning_uri,
    totp,
    verify_totp,
)

# RFC 6238 Appendix B: the seed is the ASCII digits repeated to the hash's block-friendly length.
SEEDS = {
    Algorithm.SHA1: b"12345678901234567890",
    Algorithm.SHA256: b"12345678901234567890123456789012",
    Algorithm.SHA512: b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC_6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
# RFC 4226 Appendix D: HOTP values for counters 0..9 of the SHA-1 seed.
RFC_4226 = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC_6238)
def test_it_matches_the_rfc_6238_vectors(at, sha1, sha256, sha512):
    for algorithm, expected in zip(Algorithm, (sha1, sha256, sha512), strict=True):
        assert totp(SEEDS[algorithm], at, digits=8, algorithm=algorithm) == expected


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC_4226)))
def test_it_matches_the_rfc_4226_vectors(counter, expected):
    assert hotp(SEEDS[Algorithm.SHA1], counter) == expected


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC_6238)
def test_it_verifies_the_rfc_vectors_and_returns_their_step(at, sha1, sha256, sha512):
    for algorithm, expected in zip(Algorithm, (sha1, sha256, sha512), strict=True):
        step = verify_totp(SEEDS[algorithm], expected, at, digits=8, algorithm=algorithm)
        assert step == at // 30


def test_it_accepts_one_step_of_clock_drift_either_way():
    key = SEEDS[Algorithm.SHA1]
    now = 1111111111
    assert verify_totp(key, totp(key, now - 30), now) == now // 30 - 1
    assert verify_totp(key, totp(key, now + 30), now) == now // 30 + 1
    assert verify_totp(key, totp(key, now - 60), now) is None
    assert verify_totp(key, totp(key, now + 60), now) is None


def test_it_refuses_a_replayed_code_and_any_older_one():
    key = SEEDS[Algorithm.SHA1]
    now = 1234567890
    step = verify_totp(key, totp(key, now), now)
    assert step is not None
    assert verify_totp(key, totp(key, now), now, last_step=step) is None
    assert verify_totp(key, totp(key, now - 30), now, last_step=step) is None
    assert verify_totp(key, totp(key, now + 30), now, last_step=step) == step + 1


def test_it_forgives_spaces_but_not_wrong_lengths_or_letters():
    key = SEEDS[Algorithm.SHA1]
    code = totp(key, 59)
    assert verify_totp(key, f"{code[:3]} {code[3:]}", 59) == 1
    assert verify_totp(key, code[:5], 59) is None
    assert verify_totp(key, "abcdef", 59) is None
    assert verify_totp(key, "", 59) is None


def test_it_round_trips_a_generated_secret():
    secret = generate_secret()
    assert len(decode_secret(secret)) == 20
    assert decode_secret(secret.lower()) == decode_secret(secret)
    with pytest.raises(ValueError, match="empty"):
        decode_secret("")


def test_it_refuses_impossible_parameters():
    with pytest.raises(ValueError, match="6 to 8"):
        hotp(b"key", 0, digits=5)
    with pytest.raises(ValueError, match="negative"):
        hotp(b"key", -1)


def test_it_writes_a_provisioning_uri_with_the_chinese_issuer():
    uri = provisioning_uri("GEZDGNBVGY3TQOJQ", "张三")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == "/票通 Piaotong:张三"
    query = parse_qs(parts.query)
    assert query == {
        "secret": ["GEZDGNBVGY3TQOJQ"],
        "issuer": ["票通 Piaotong"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
