"""Tests for transfers.dlp: the streaming DLP scanner and its rules."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from transfers.dlp import OVERLAP, WINDOW, Finding, Rule, RuleError, blocking, scan

CARD = Rule("cards", "card", action="block")
SSN = Rule("ssns", "ssn")
IBAN = Rule("ibans", "iban")
CONFIDENTIAL = Rule("confidential", "regex", r"(?i)\bconfidential\b")
ALL = [CARD, SSN, IBAN, CONFIDENTIAL]
FILLER = b"2024-01-15;ORDER-1234567;Widget, blue;12.50;EUR;shipped\n"
PROSE = b"Please find attached the statement for March; call us on 020 7946 0958.\n"


def _counts(data: bytes, rules: list[Rule] = ALL, chunk: int | None = None) -> dict[str, int]:
    """Scan data (in chunks of the given size) and return counts by rule name."""
    size = chunk or len(data) or 1
    chunks = [data[offset : offset + size] for offset in range(0, len(data), size)]
    return {finding.rule: finding.count for finding in scan(chunks, rules)}


def _luhn_complete(body: str) -> str:
    """Return body followed by the Luhn check digit that makes it valid."""
    for check in "0123456789":
        candidate = body + check
        digits = [int(char) for char in reversed(candidate)]
        total = sum(digits[0::2]) + sum(sum(divmod(2 * digit, 10)) for digit in digits[1::2])
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


# Payment cards


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "3782 822463 10005",  # American Express
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "4111 1111 1111 1111 12 27 123",  # followed by expiry date and CVV
        "No. 12 4111 1111 1111 1111",  # preceded by another number
    ],
)
def test_card_numbers_are_found(number: str) -> None:
    assert _counts(f"pay with {number} today".encode()) == {"cards": 1}


def test_card_number_failing_luhn_is_ignored() -> None:
    assert _counts(b"pay with 4111 1111 1111 1112 today") == {}


def test_luhn_valid_number_outside_card_ranges_is_ignored() -> None:
    number = _luhn_complete("123456789012345")
    assert _counts(f"order {number}".encode()) == {}


def test_card_number_inside_a_longer_digit_run_is_ignored() -> None:
    assert _counts(b"id 94111111111111111") == {}


# US social security numbers


def test_valid_ssn_is_found() -> None:
    assert _counts(b"SSN: 536-22-1234.") == {"ssns": 1}


@pytest.mark.parametrize(
    "number",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "912-12-3456",  # area 9xx
        "536-00-1234",  # group 00
        "536-22-0000",  # serial 0000
        "078-05-1120",  # voided after appearing in wallet inserts
        "536-22-12345",  # too long
    ],
)
def test_ssn_in_invalid_range_is_ignored(number: str) -> None:
    assert _counts(f"SSN: {number}.".encode()) == {}


# IBANs


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
    ],
)
def test_valid_iban_is_found(iban: str) -> None:
    assert _counts(f"Pay to {iban} EUR".encode()) == {"ibans": 1}


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765431",  # checksum
        "DE89370400440532013001",  # checksum
        "GB82WEST123456987654321",  # one character too many for GB
        "ZZ82WEST12345698765432",  # no such country
    ],
)
def test_invalid_iban_is_ignored(iban: str) -> None:
    assert _counts(f"Pay to {iban} now".encode()) == {}


# Custom rules


def test_custom_regex_counts_each_match() -> None:
    assert _counts(b"CONFIDENTIAL\nnot confidentiality\nConfidential") == {"confidential": 2}


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a" * 201, "longer than"),
        (r"(a+)+$", "nested quantifiers"),
        (r"(\w*\s?)*x", "nested quantifiers"),
        (r"(ab)\1", "back-references"),
        (r"x*", "matches empty text"),
        (r"[unclosed", "invalid pattern"),
    ],
)
def test_dangerous_or_broken_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        Rule("custom", "regex", pattern)


def test_builtin_kind_refuses_a_pattern() -> None:
    with pytest.raises(RuleError, match="kind 'regex' only"):
        Rule("cards", "card", r"\d+")


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(RuleError, match="unique"):
        scan([b""], [CARD, Rule("cards", "ssn")])


# Streaming


@pytest.mark.parametrize(
    "secret",
    [
        "4111 1111 1111 1111",
        "536-22-1234",
        "GB82 WEST 1234 5698 7654 32",
        "Confidential",
    ],
)
def test_match_split_across_chunks_is_counted_once(secret: str) -> None:
    data = b"x" * 1000 + f" {secret} ".encode() + b"y" * 1000
    for split in range(995, 1000 + len(secret) + 5):
        chunks = [data[:split], data[split:]]
        findings = scan(chunks, ALL)
        assert [finding.count for finding in findings] == [1], (split, findings)


def test_card_shaped_start_of_a_longer_number_split_at_a_boundary_is_ignored() -> None:
    prefix = _luhn_complete("411111111111")  # a valid 13-digit Visa on its own…
    number = prefix + "123"  # …but only the start of a 16-digit number that is no card
    assert not _counts(number.encode())
    data = b"." * 2000 + number.encode() + b"."
    assert scan([data[: 2000 + len(prefix)], data[2000 + len(prefix) :]], [CARD]) == []


def test_byte_by_byte_stream_finds_everything_once() -> None:
    data = b"4111111111111111 536-22-1234 GB82WEST12345698765432 confidential"
    assert (
        _counts(data, chunk=1)
        == _counts(data)
        == {"cards": 1, "ssns": 1, "ibans": 1, "confidential": 1}
    )


def test_utf8_character_split_across_chunks_does_not_hide_a_match() -> None:
    data = "Résumé ".encode() * 100 + b"536-22-1234"
    assert _counts(data, chunk=3) == {"ssns": 1}


def test_utf16_text_is_scanned() -> None:
    assert _counts("card 4111111111111111\r\n".encode("utf-16")) == {"cards": 1}


def test_malformed_byte_does_not_join_digits() -> None:
    assert _counts(b"4111 1111\xff1111 1111") == {}


def test_oversized_chunk_is_scanned_in_windows() -> None:
    data = FILLER * (3 * WINDOW // len(FILLER)) + b"4111111111111111\n" + FILLER * 10
    assert _counts(data) == {"cards": 1}
    assert OVERLAP < WINDOW


def test_card_at_the_end_of_a_50_mb_stream_is_found_in_bounded_memory() -> None:
    block = PROSE * ((1 << 20) // len(PROSE))

    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent < 50_000_000:
            yield block
            sent += len(block)
        yield b"last line: 5555 5555 5555 4444\n"

    findings, peak = _traced(lambda: scan(chunks(), [CARD]))
    assert findings == [Finding("cards", "card", 1)]
    assert peak < 1 << 20, f"peak Python memory {peak} bytes"


def test_endless_custom_match_keeps_memory_bounded() -> None:
    rule = Rule("secret line", "regex", r"SECRET[^\n]*")
    line = b"SECRET" + b"x" * (8 << 20) + b"\n"
    findings, peak = _traced(lambda: scan(iter([line]), [rule]))
    assert findings and findings[0].count >= 1  # a match longer than OVERLAP may count twice
    assert peak < 1 << 20, f"peak Python memory {peak} bytes"


def _traced(work: Callable[[], list[Finding]]) -> tuple[list[Finding], int]:
    """Run work; return its findings and the peak Python memory it allocated."""
    tracemalloc.start()
    try:
        findings = work()
        return findings, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Findings and policy


def test_findings_never_contain_the_matched_text() -> None:
    secrets = ["4111111111111111", "536-22-1234", "GB82WEST12345698765432", "Confidential"]
    findings = scan([" ".join(secrets).encode()], ALL)
    assert len(findings) == 4
    shown = repr(findings) + repr([dataclasses.asdict(finding) for finding in findings])
    assert not any(secret in shown for secret in secrets)
    assert {field.name for field in dataclasses.fields(Finding)} == {"rule", "kind", "count"}


def test_blocking_needs_a_finding_from_a_block_rule() -> None:
    assert not blocking(scan([b"SSN 536-22-1234"], ALL), ALL)
    assert blocking(scan([b"card 4111111111111111"], ALL), ALL)
    assert not blocking([], ALL)
