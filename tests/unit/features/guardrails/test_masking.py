from __future__ import annotations

import pytest

from sidecar.core.entity import ALL_CATEGORIES, Entity
from sidecar.features.guardrails.masking import MaskNumbering, mask_text
from sidecar.features.guardrails.pii import find_entities


def mask(text: str, numbering: MaskNumbering) -> str:
    return mask_text(text, find_entities(text, ALL_CATEGORIES), numbering)


def test_placeholders_per_category_in_reading_order() -> None:
    text = "Mail a@example.com or b@example.com, call (415) 555-0132."
    assert mask(text, MaskNumbering()) == "Mail [EMAIL_1] or [EMAIL_2], call [PHONE_1]."


def test_same_value_same_placeholder_across_messages() -> None:
    numbering = MaskNumbering()
    first = mask("From a@example.com to b@example.com", numbering)
    second = mask("Reply to B@EXAMPLE.COM and c@example.com, cc a@example.com", numbering)
    assert first == "From [EMAIL_1] to [EMAIL_2]"
    assert second == "Reply to [EMAIL_2] and [EMAIL_3], cc [EMAIL_1]"
    assert numbering.count("email") == 3


def test_card_spelled_differently_is_one_value() -> None:
    text = "4111 1111 1111 1111 then 4111-1111-1111-1111 then 5555555555554444"
    assert mask(text, MaskNumbering()) == "[CREDIT_CARD_1] then [CREDIT_CARD_1] then [CREDIT_CARD_2]"


def test_cjk_glued_masking_and_category_labels() -> None:
    text = "请联系john@example.com，卡号4111111111111111，IP 10.0.0.1"
    assert mask(text, MaskNumbering()) == "请联系[EMAIL_1]，卡号[CREDIT_CARD_1]，IP [IP_ADDRESS_1]"


def test_no_entities_returns_text_unchanged() -> None:
    assert mask_text("nothing here", [], MaskNumbering()) == "nothing here"


def test_overlapping_entities_rejected() -> None:
    with pytest.raises(ValueError, match="non-overlapping"):
        mask_text("abcdef", [Entity("email", 0, 4), Entity("phone", 2, 6)], MaskNumbering())


def test_numbering_instances_are_independent() -> None:
    one, two = MaskNumbering(), MaskNumbering()
    assert one.placeholder("email", "a@x.io") == "[EMAIL_1]"
    assert one.placeholder("email", "b@x.io") == "[EMAIL_2]"
    assert two.placeholder("email", "b@x.io") == "[EMAIL_1]"


def test_reserved_labels_are_skipped() -> None:
    numbering = MaskNumbering()
    numbering.reserve('the "[EMAIL_1]" and [EMAIL_3] someone else wrote; not a label: [EMAIL_x]')
    assert numbering.placeholder("email", "a@x.io") == "[EMAIL_2]"
    assert numbering.placeholder("email", "b@x.io") == "[EMAIL_4]"
    assert numbering.placeholder("email", "a@x.io") == "[EMAIL_2]"
    assert numbering.placeholder("phone", "+1 555 0100") == "[PHONE_1]"
