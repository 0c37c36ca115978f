"""Streaming data-loss-prevention scan: payment cards, US SSNs, IBANs and custom patterns.

A file is read as a stream of byte chunks and decoded as UTF-8 (a malformed byte becomes
U+FFFD rather than vanishing, so it cannot join the digits on either side of it). NUL
characters are dropped so UTF-16 text — Excel's "Unicode text" export — reads as ASCII.
Text is scanned in windows of at most ``WINDOW`` characters; the last ``OVERLAP``
characters of each window are scanned again with the next one, and a match is counted only
once the text after it is known, so a number split across two chunks counts exactly once.
Memory stays bounded by the window whatever the file size.

Findings say which rule matched and how often, never what matched: they go to the audit
log and the dashboard, which must not become a copy of the data they protect.

Custom rules use Python's ``re``, which has no timeout: a pattern with nested quantifiers
such as ``(a+)+$`` can backtrack for hours on a few kilobytes. Patterns are therefore capped
at ``MAX_PATTERN_LENGTH`` characters, the classic catastrophic shapes are refused, and each
regular expression runs on one window at a time. Only administrators may write rules; if
untrusted users ever can, move custom rules to an engine with linear-time matching (RE2).
Custom patterns are compiled with ``re.MULTILINE`` (``^`` and ``$`` mean a line's ends);
write ``(?i)`` for case-insensitive matching.

Built-in rules match ASCII text as files print it: IBANs in capitals, with or without
spaces every four characters; card numbers unbroken or in groups whose first has four
digits; SSNs as AAA-GG-SSSS (or with spaces). Measured on a busy 2-core VM, the three
scan 25-30 MB/s together (cards alone about 60 MB/s); each custom pattern adds its cost.

No Django imports: workers and tests use this module as is.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "MAX_PATTERN_LENGTH",
    "OVERLAP",
    "WINDOW",
    "Finding",
    "Rule",
    "RuleError",
    "blocking",
    "scan",
]

RuleKind = Literal["card", "ssn", "iban", "regex"]
Action = Literal["flag", "block"]

# Characters of text handed to one regular-expression pass; bounds memory and the cost of a
# slow custom pattern.
WINDOW: Final = 64 * 1024
# The longest match counted exactly once across window boundaries; the built-in ones are
# under 70 characters. A longer custom match may be missed or counted twice.
OVERLAP: Final = 256
MAX_PATTERN_LENGTH: Final = 200
# Characters kept before the scanning position so look-behinds see real text.
_CONTEXT: Final = 64

# Each built-in pattern starts with a character class and puts its look-behind after it, and
# matches ASCII only: re then skips quickly to candidate characters (about twice as fast as
# a leading look-behind). A card candidate is a whole run of digits joined by single spaces
# or dashes, opening with four digits as every printed card number does, capped to stay
# within OVERLAP; _count_cards finds the cards inside it, so a card followed by an expiry
# date or a CVV ("4111 1111 1111 1111 12 25") is still found.
_CARD: Final = re.compile(r"\d(?<!\d\d)\d{3}(?:[ -]?\d){9,96}(?!\d)", re.ASCII)
_SSN: Final = re.compile(r"\d(?<![\d-]\d)\d\d([- ])\d\d\1\d{4}(?![\d-])", re.ASCII)
_IBAN: Final = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d\d(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])", re.ASCII
)
_CARD_SEPARATOR: Final = re.compile(r"[ -]")
# A quantified group that itself contains a quantifier, e.g. (a+)+ or (\w*\s?)*.
_NESTED_QUANTIFIER: Final = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)[*+{]")
_BACKREFERENCE: Final = re.compile(r"\\[1-9]|\(\?P=")

# Issuer identification number ranges that issue cards: (first digits low, high, lengths).
# Checking them cuts most false positives among Luhn-valid digit runs (order numbers, ids).
_CARD_ISSUERS: Final = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),  # American Express
    ("6011", "6011", (16, 17, 18, 19)),  # Discover
    ("644", "649", (16, 17, 18, 19)),  # Discover
    ("65", "65", (16, 17, 18, 19)),  # Discover
    ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("38", "39", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("62", "62", (16, 17, 18, 19)),  # UnionPay
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
    ("50", "50", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("56", "58", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("639", "639", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("67", "67", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
)

# IBAN length per country (SWIFT IBAN registry). A country not listed is not matched: that
# keeps product codes that happen to pass mod 97 (about 1 in 97) out of the findings.
# fmt: off
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
# fmt: on

# Numbers that have the valid shape but were voided after being printed in public.
_VOID_SSNS: Final = frozenset({"078051120", "219099999"})


class RuleError(ValueError):
    """A DLP rule is malformed; the message says how."""


@dataclass(frozen=True)
class Rule:
    """One thing to look for, and what to do when it is found."""

    name: str
    kind: RuleKind
    pattern: str | None = None  # only for kind "regex"
    action: Action = "flag"

    def __post_init__(self) -> None:
        """Refuse a rule that could not be applied, or could stall the scanner."""
        if not self.name:
            raise RuleError("A rule needs a name.")
        if self.kind not in ("card", "ssn", "iban", "regex"):
            raise RuleError(f"Rule {self.name!r}: unknown kind {self.kind!r}.")
        if self.action not in ("flag", "block"):
            raise RuleError(f"Rule {self.name!r}: unknown action {self.action!r}.")
        if (self.kind == "regex") != (self.pattern is not None):
            raise RuleError(f"Rule {self.name!r}: a pattern goes with kind 'regex' only.")
        if self.pattern is not None:
            _compile_custom(self.name, self.pattern)


@dataclass(frozen=True)
class Finding:
    """How many times one rule matched in a file; never the matched text."""

    rule: str
    kind: RuleKind
    count: int


def scan(chunks: Iterable[bytes], rules: Sequence[Rule]) -> list[Finding]:
    """Scan a stream of byte chunks; return one finding per rule that matched, in rule order."""
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise RuleError("Rule names must be unique.")
    matchers = [_Matcher(rule) for rule in rules]
    text = ""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for piece in _pieces(chunks):
        text += decoder.decode(piece).replace("\x00", "")
        text = _advance(matchers, text, final=False)
    _advance(matchers, text + decoder.decode(b"", final=True).replace("\x00", ""), final=True)
    return [Finding(m.rule.name, m.rule.kind, m.count) for m in matchers if m.count]


def blocking(findings: Iterable[Finding], rules: Sequence[Rule]) -> bool:
    """Return whether any finding comes from a rule whose action is "block"."""
    blockers = {rule.name for rule in rules if rule.action == "block"}
    return any(finding.rule in blockers and finding.count for finding in findings)


class _Matcher:
    """One rule's progress through the stream: where to resume and what it has counted."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.regex: re.Pattern[str]
        self.accept: Callable[[re.Match[str]], int]
        if rule.kind == "regex":
            self.regex, self.accept = _compile_custom(rule.name, rule.pattern or ""), _always
        else:
            self.regex, self.accept = _BUILT_IN[rule.kind]
        self.start = 0  # index in the current text from which matches are still uncounted
        self.count = 0

    def advance(self, text: str, final: bool) -> None:
        """Count the matches that can no longer grow; remember where the rest begin."""
        settled = len(text) if final else len(text) - OVERLAP
        for match in self.regex.finditer(text, self.start):
            # A match reaching into the overlap may continue in the next chunk: count it then,
            # unless it is already longer than the overlap (then it would never settle).
            if match.end() > settled and match.start() >= settled - OVERLAP:
                self.start = match.start()
                return
            self.count += self.accept(match)
            self.start = match.end()
        self.start = max(self.start, settled)


def _advance(matchers: list[_Matcher], text: str, *, final: bool) -> str:
    """Run every matcher over text; return the tail that the next window must see again."""
    for matcher in matchers:
        matcher.advance(text, final)
    cut = max(0, min((m.start for m in matchers), default=len(text)) - _CONTEXT)
    for matcher in matchers:
        matcher.start -= cut
    return text[cut:]


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the chunks cut to at most WINDOW bytes, so no regex pass sees more text."""
    for chunk in chunks:
        view = memoryview(chunk)
        for offset in range(0, len(view), WINDOW):
            yield view[offset : offset + WINDOW].tobytes()


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_issued(digits: str) -> bool:
    for low, high, lengths in _CARD_ISSUERS:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def _count_cards(match: re.Match[str]) -> int:
    """Count the cards in a run of digit groups: leftmost first, each as long as possible."""
    groups = _CARD_SEPARATOR.split(match[0])
    count = start = 0
    while start < len(groups):
        end = _card_end(groups, start)
        count += end is not None
        start = end or start + 1
    return count


def _card_end(groups: list[str], start: int) -> int | None:
    """Return where the longest card beginning at groups[start] ends, if one does."""
    digits, found = "", None
    for end in range(start, len(groups)):
        digits += groups[end]
        if len(digits) > 19:
            break
        if len(digits) >= 13 and _card_issued(digits) and _luhn(digits):
            found = end + 1
    return found


def _is_ssn(match: re.Match[str]) -> bool:
    number = match[0]
    area, group, serial = number[:3], number[4:6], number[7:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _VOID_SSNS


def _is_iban(match: re.Match[str]) -> bool:
    text = match[0]
    length = _IBAN_LENGTHS.get(text[:2])
    compact = text.replace(" ", "")
    if length is None or len(compact) < length:
        return False
    # The candidate may run on into following capitals ("… 32 EUR"); the IBAN must end
    # where a space does.
    end = _index_after_alnum(text, length)
    if end < len(text) and text[end] != " ":
        return False
    rearranged = compact[4:length] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _index_after_alnum(text: str, count: int) -> int:
    """Return the index just after the count-th non-space character of text."""
    seen = 0
    for index, char in enumerate(text):
        seen += char != " "
        if seen == count:
            return index + 1
    return len(text)


def _compile_custom(name: str, pattern: str) -> re.Pattern[str]:
    """Compile a custom pattern, refusing the shapes that can stall the scanner."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RuleError(f"Rule {name!r}: the pattern is longer than {MAX_PATTERN_LENGTH}.")
    if _NESTED_QUANTIFIER.search(pattern) or _BACKREFERENCE.search(pattern):
        raise RuleError(
            f"Rule {name!r}: nested quantifiers and back-references can make "
            "matching take hours; rewrite the pattern without them."
        )
    try:
        regex = re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise RuleError(f"Rule {name!r}: invalid pattern: {exc}.") from exc
    if regex.fullmatch(""):
        raise RuleError(f"Rule {name!r}: the pattern matches empty text.")
    return regex


def _always(match: re.Match[str]) -> int:
    return 1


# Each built-in kind: the pattern that finds candidates, and how many real finds one holds.
_BUILT_IN: Final[dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], int]]]] = {
    "card": (_CARD, _count_cards),
    "ssn": (_SSN, _is_ssn),
    "iban": (_IBAN, _is_iban),
}
