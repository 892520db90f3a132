"""Behaviour of the regex PII and secret detectors (no data set needed)."""

import pytest

from pipeline.safety.pii import PiiSpan, find_pii, redact
from pipeline.safety.pii.scanners import SCANNERS
from pipeline.safety.pii.validation import shannon_entropy
from pipeline.vocabulary import KNOWN_ENTITIES

# Test-only credentials: random strings in each vendor's format or documented example values
# (AKIAIOSFODNN7EXAMPLE); none of them grants access. They are built from pieces so that secret
# scanners on the repository do not mistake the test file for a leak.
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM = (
    "-----BEGIN RSA " + "PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA " + "PRIVATE KEY-----"
)


def found(text: str) -> list[tuple[str, str]]:
    return [(s.entity, text[s.start : s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        (
            "Please reply to jane.doe+billing@mail.example.co.uk today.",
            "EMAIL_ADDRESS",
            "jane.doe+billing@mail.example.co.uk",
        ),
        ("Call me at +1-555-123-4567 after lunch.", "PHONE_NUMBER", "+1-555-123-4567"),
        ("Our office line is (555) 123-4567.", "PHONE_NUMBER", "(555) 123-4567"),
        ("Text 555.123.4567 when you land", "PHONE_NUMBER", "555.123.4567"),
        ("The London desk is on +44 20 7946 0958.", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("Reach her on 001-555-123-4567x123 please", "PHONE_NUMBER", "001-555-123-4567x123"),
        ("Fax: 9498777106", "PHONE_NUMBER", "9498777106"),
        ("Charge it to 4111 1111 1111 1111, exp 12/25", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("My Amex 3782-822463-10005 was declined", "CREDIT_CARD", "3782-822463-10005"),
        (
            "Transfer to DE89 3704 0044 0532 0130 00 by Friday",
            "IBAN_CODE",
            "DE89 3704 0044 0532 0130 00",
        ),
        ("wire it to GB82WEST12345698765432.", "IBAN_CODE", "GB82WEST12345698765432"),
        ("His SSN is 536-22-8741.", "US_SSN", "536-22-8741"),
        ("social security number 536228741", "US_SSN", "536228741"),
        ("The host 10.24.8.17 stopped answering", "IP_ADDRESS", "10.24.8.17"),
        ("ping 2001:db8:85a3::8a2e:370:7334 again", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ],
)
def test_each_entity_is_found_in_a_sentence(text, entity, value):
    assert found(text) == [(entity, value)]


@pytest.mark.parametrize(
    "secret",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIA" + "Y34FZKBOKMUTVV7A",
        GITHUB,
        "gho_" + "16C7e42F292c6912E7710c838347Ae178B4a",
        "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
        "sk-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-ant-api03-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        JWT,
        PEM,
    ],
)
def test_each_secret_format_is_found(secret):
    text = f"here is the value:\n{secret}\nplease keep it safe"
    assert found(text) == [("SECRET", secret)]


def test_truncated_private_key_is_still_a_secret():
    text = "key follows\n-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA"
    assert found(text) == [("SECRET", text[len("key follows\n") :])]


def test_high_entropy_token_counts_only_after_a_secret_word():
    random_token = "q8Zr4mT2vX9pL1sK7nB3wE6y"
    assert found(f'config = {{"api_key": "{random_token}"}}') == [("SECRET", random_token)]
    aws = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    assert found(f"export AWS_SECRET_ACCESS_KEY={aws}") == [("SECRET", aws)]
    sha = "3f2a4b5c6d7e8f9012345678abcdef0123456789"
    assert found(f"the token {sha} was revoked") == [("SECRET", sha)]
    assert found(f"fixed in commit {sha} yesterday") == []  # a hash in prose is not a secret
    assert found(f"the file {random_token} was renamed") == []


def test_low_entropy_words_after_a_secret_word_are_not_secrets():
    assert found("password is correcthorsebatterystaple") == []
    assert found("token: abc123abc123abc123abc123") == []
    assert shannon_entropy("aaaa") == 0.0 and shannon_entropy("abcd") == 2.0


def test_luhn_invalid_card_is_rejected():
    assert found("card 4111 1111 1111 1112") == []
    assert found("card 4111111111111112") == []


def test_bad_iban_checksum_and_wrong_length_are_rejected():
    assert found("IBAN GB82WEST12345698765433") == []  # check digits do not match
    assert found("IBAN DE89 3704 0044 0532 0130") == []  # too short for Germany


def test_ip_octets_must_be_bytes():
    assert found("host 192.168.1.300 is down") == []
    assert found("version 300.1.2.999") == []
    assert found("c++ uses std::vector and a::b") == []


def test_benign_numbers_dates_and_versions_are_not_pii():
    for text in [
        "version 3.11.4 released 2024-05-01, order 12345",
        "Meeting on 2024-05-01 12:30:45 in room 101, invoice 2024-05-01-0042",
        "The population was 8 336 817 in 2019 and 1,234,567 in 1990.",
        "Revenue hit 12.345.678.901 EUR at 18:08 2006-01-09",
        "the year 2024 had 365 days and a 99.9% uptime",
        "office is at 17031 2202 Main St",
        "Born 12.05.1984, moved to unit 5022 box 1225",
    ]:
        assert found(text) == [], text


def test_numbers_next_to_each_other_are_split_sensibly():
    assert found("Call 555-123-4567,555-987-6543 now") == [
        ("PHONE_NUMBER", "555-123-4567"),
        ("PHONE_NUMBER", "555-987-6543"),
    ]
    assert found("host 10.0.0.1 555-123-4567") == [
        ("IP_ADDRESS", "10.0.0.1"),
        ("PHONE_NUMBER", "555-123-4567"),
    ]
    assert found("pay 2 4111-1111-1111-1111 12/25") == [("CREDIT_CARD", "4111-1111-1111-1111")]


def test_labelled_short_numbers_are_phones_only_with_a_label():
    assert found("Phone: 9472 7916") == [("PHONE_NUMBER", "9472 7916")]
    assert found("Can someone call me on 450 0840?") == [("PHONE_NUMBER", "450 0840")]
    assert found("Invoice 9472 7916 is overdue") == []


def test_redact_produces_typed_placeholders():
    text = "mail ana@example.org or call 415-555-0132, key AKIAIOSFODNN7EXAMPLE"
    assert redact(text, find_pii(text)) == (
        "mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>, key <SECRET>"
    )


def raw_candidates(text: str) -> set[tuple[str, str]]:
    return {(e, text[a:b]) for scan in SCANNERS for e, a, b in scan(text)}


def test_overlapping_matches_resolve_to_one_span():
    # the digits before "@" are also a labelled phone number: the email wins
    text = "call me at 5551234567@sms.example.com"
    assert ("PHONE_NUMBER", "5551234567") in raw_candidates(text)
    assert found(text) == [("EMAIL_ADDRESS", "5551234567@sms.example.com")]
    # a labelled 3-2-4 number is both an SSN and a phone candidate: the SSN wins, and it still
    # suppresses the phone reading when only phones are asked for
    text = "Phone: 536-22-8741"
    assert {("US_SSN", "536-22-8741"), ("PHONE_NUMBER", "536-22-8741")} <= raw_candidates(text)
    assert found(text) == [("US_SSN", "536-22-8741")]
    assert find_pii(text, ["PHONE_NUMBER"]) == []
    text = "a@b.co 4111111111111111 10.0.0.1 555-123-4567"
    assert [e for e, _ in found(text)] == [
        "EMAIL_ADDRESS",
        "CREDIT_CARD",
        "IP_ADDRESS",
        "PHONE_NUMBER",
    ]


def test_entities_filter_and_known_entities():
    text = "ana@example.org 10.24.8.17"
    assert [s.entity for s in find_pii(text, ["IP_ADDRESS"])] == ["IP_ADDRESS"]
    assert find_pii(text, []) == []
    assert set(KNOWN_ENTITIES) == {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
        "SECRET",
    }
    assert find_pii(text)[0] == PiiSpan("EMAIL_ADDRESS", 0, 15)
