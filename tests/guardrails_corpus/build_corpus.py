"""Regenerates cases.jsonl deterministically: ``python tests/guardrails_corpus/build_corpus.py``.

Checksums (Luhn, IBAN mod-97) are computed here independently of
``sidecar.features.guardrails`` so the corpus does not inherit detector bugs.  Hand-
written cases are listed inline; generated ones use a fixed seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
rng = random.Random(20261125)
cases: list[dict[str, object]] = []


def add(text: str, expect: list[tuple[str, str]], note: str) -> None:
    for _, value in expect:
        assert value in text, (value, text)
    cases.append({"text": text, "expect": [{"category": c, "value": v} for c, v in expect], "note": note})


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return digits
    raise AssertionError


def iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def grouped(value: str, sep: str = " ", sizes: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4, 4)) -> str:
    parts, i = [], 0
    for size in sizes:
        if i >= len(value):
            break
        parts.append(value[i : i + size])
        i += size
    return sep.join(parts)


# ---------------------------------------------------------------- cards
CARD_TEMPLATES = [
    "Please charge my card {v} for the order.",
    "Card number: {v}, exp 12/27, CVV 123",
    "我的信用卡号是{v}，谢谢",
    "卡号{v}",
    "Meine Kreditkarte: {v} (gültig bis 04/26)",
    "Numéro de carte {v} merci",
    "支払いはカード{v}でお願いします",
    "cc={v}&amount=19.99",
    "Use {v} as the test card in staging.",
    "Номер карты {v}, срок 09/25",
]
known_cards = [
    "4111111111111111", "4012888888881881", "4222222222222", "5555555555554444", "5105105105105100",
    "2223003122003222", "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
    "3530111333300000", "3566002020360505", "30569309025904", "38520000023237", "6200000000000005",
]  # fmt: skip
for i, card in enumerate(known_cards):
    add(CARD_TEMPLATES[i % len(CARD_TEMPLATES)].format(v=card), [("credit_card", card)], "known test card")
for prefix, length in [("4", 16), ("51", 16), ("2720", 16), ("34", 15), ("37", 15), ("65", 16), ("3589", 16),
                       ("36", 14), ("62", 19), ("4", 19), ("2221", 16), ("644", 16)]:  # fmt: skip
    card = luhn_complete(prefix, length)
    if length == 15:
        shown = f"{card[:4]} {card[4:10]} {card[10:]}"
    elif length == 14:
        shown = f"{card[:4]}-{card[4:10]}-{card[10:]}"
    else:
        shown = grouped(card, rng.choice([" ", "-"]))
    add(CARD_TEMPLATES[rng.randrange(len(CARD_TEMPLATES))].format(v=shown), [("credit_card", shown)], "generated grouped card")
for prefix, length in [("9", 16), ("1", 16), ("8", 16), ("7", 15), ("4", 15), ("4", 17), ("34", 16), ("51", 15), ("99", 19)]:
    add(f"Order number {luhn_complete(prefix, length)} has shipped.", [], "Luhn-valid, no issuer prefix or wrong length")
add("Card 4111111111111112 was declined", [], "Luhn failure")
add("Card 5555 5555 5555 4445 was declined", [], "Luhn failure grouped")
add("IMEI: 490154203237518", [], "IMEI Luhn-valid 15 digits")
add("IMEI 356938035643809 registered to the device", [], "IMEI Luhn-valid 15 digits")
add("My phone's IMEI is 35-209900-176148-1", [], "IMEI dashed")
add("Account 0000000000000000 is a filler value", [], "all zeros")
add("Transaction id 41111111111111111111 failed", [], "too long")
add("The file abc4111111111111111def was uploaded", [], "glued to ASCII letters")

# ---------------------------------------------------------------- IBAN
known_ibans = [
    "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300",
    "ES9121000418450200051332", "IT60X0542811101000000123456", "BE68539007547034", "CH9300762011623852957",
    "AT611904300234573201", "PL61109010140000071219812874", "SE4550000000058398257466", "NO9386011117947",
    "DK5000400440116243", "FI2112345600000785", "IE29AIBK93115212345678",
]  # fmt: skip
IBAN_TEMPLATES = [
    "Please wire the money to {v} by Friday.",
    "IBAN: {v}",
    "Bitte überweisen Sie auf {v}, Verwendungszweck Rechnung 2024-118.",
    "Mon IBAN est {v} (BNP).",
    "收款账户{v}谢谢",
    "Kontonummer {v}.",
]
for i, value in enumerate(known_ibans):
    shown = grouped(value) if i % 2 else value
    add(IBAN_TEMPLATES[i % len(IBAN_TEMPLATES)].format(v=shown), [("iban", shown)], "known IBAN")
for country, bban in [("DE", "100200500124567890"), ("GB", "NWBK60161331926819"),
                      ("FR", "30006000011234567890189"), ("NL", "RABO0123456789"), ("LU", "0019400644750000"),
                      ("PT", "000201231234567890154"), ("HR", "10010051863000160"), ("CZ", "08000000192000145399"),
                      ("BR", "00360305000010009795493P1"), ("SA", "80000000608010167519")]:  # fmt: skip
    assert len(country) + 2 + len(bban) in (22, 27, 18, 20, 25, 21, 24, 29), country
    value = iban(country, bban)
    shown = grouped(value) if rng.random() < 0.5 else value
    add(IBAN_TEMPLATES[rng.randrange(len(IBAN_TEMPLATES))].format(v=shown), [("iban", shown)], "generated IBAN")
add("IBAN DE89370400440532013001 (typo)", [], "bad checksum")
add("Send to GB82WEST12345698765431 please", [], "bad checksum")
add("IBAN DE8937040044053201300 is too short", [], "wrong length for country")
add("Reference ZZ12345678901234567890", [], "unknown country")
add("Part number AB12CD34EF56GH78 in stock", [], "IBAN-shaped SKU")
add("IBAN FR14 2004 1010 0505 0001 3M02 607 has a typo", [], "bad checksum grouped")

# ---------------------------------------------------------------- SSN
SSN_TEMPLATES = [
    "My SSN is {v}.",
    "SSN: {v}",
    "Employee social security number {v} on file",
    "社会安全号码{v}",
    "Please verify {v} against the W-2.",
]
for _ in range(14):
    area = rng.choice([a for a in range(1, 900) if a != 666])
    value = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    add(SSN_TEMPLATES[rng.randrange(len(SSN_TEMPLATES))].format(v=value), [("ssn", value)], "formatted SSN")
add("SSN 123456789 on the form", [("ssn", "123456789")], "unformatted SSN with context")
add("social security: 219099999", [("ssn", "219099999")], "unformatted SSN with context")
add("my ssn is 078051120", [("ssn", "078051120")], "unformatted SSN with context")
for bad in ["000-12-3456", "666-45-6789", "900-12-3456", "987-65-4321", "123-00-4567", "123-45-0000"]:
    add(f"SSN {bad} is invalid", [], "invalid SSN block")
add("Ticket 123456789 was closed", [], "9 digits without SSN cue")
add("ZIP code 94105-1234", [], "ZIP+4")
add("Part 123-45-67890 ordered", [], "longer dashed number")

# ---------------------------------------------------------------- phones
PHONE_TEMPLATES = [
    "Call me at {v} tomorrow.",
    "Phone: {v}",
    "You can reach support on {v} (9am-5pm).",
    "请拨打{v}联系我们",
    "Rufen Sie mich unter {v} an.",
    "Llámame al {v}, gracias.",
    "電話番号は{v}です",
    "Контактный телефон: {v}.",
]
phones = [
    "(415) 555-0132", "415-555-0132", "415.555.0132", "+1 415 555 0132", "1-800-555-0199", "+1 (212) 555-0147",
    "212 555 0147", "+44 20 7946 0958", "+49 30 901820", "+33 1 42 68 53 00", "+81 3-1234-5678",
    "+86 138 0013 8000", "+8613800138000", "+91 98765 43210", "+61 2 9876 5432", "+55 11 91234-5678",
    "+7 495 123-45-67", "+34 912 345 678", "+39 06 1234 5678", "(646) 555-0199", "+1-303-555-0170",
    "+353 1 234 5678", "+27 21 555 0100", "+52 55 1234 5678", "617.555.0123", "+14155550132",
]  # fmt: skip
for i, phone in enumerate(phones):
    add(PHONE_TEMPLATES[i % len(PHONE_TEMPLATES)].format(v=phone), [("phone", phone)], "phone")
add("电话13800138000", [("phone", "13800138000")], "CN mobile with cue (glued)")
add("手机：13912345678，随时联系", [("phone", "13912345678")], "CN mobile with cue")
add("Tel 4155550132", [("phone", "4155550132")], "bare NANP with cue")
add("订单号13800138000已发货", [], "CN mobile-shaped order number without phone cue")
for text, note in [
    ("The meeting is on 2024-01-15 at 10:30.", "ISO date"),
    ("Logged at 2024-01-15T10:30:00Z by the job", "timestamp"),
    ("Created 2023-11-05 14:22:31.123456", "timestamp with micros"),
    ("Due 15.01.2024, paid 01/15/2024", "European/US dates"),
    ("Unix time 1700000000 corresponds to Nov 2023", "epoch seconds"),
    ("epoch ms 1700000000123", "epoch millis"),
    ("The price is $1,234.56 or €415.55", "prices"),
    ("Total: $4155550132.00", "price-shaped digits"),
    ("Order #415-555-0132 has shipped", "order number"),
    ("Order number 5550132415 has shipped", "bare order number"),
    ("Invoice no. 212-555-0147 attached", "invoice number"),
    ("Tracking: 1Z999AA10123456784", "UPS tracking"),
    ("FedEx tracking 7489 1234 5678", "FedEx tracking"),
    ("ISBN 978-0-306-40615-7", "ISBN-13 dashed"),
    ("ISBN 9780306406157 in the catalogue", "ISBN-13 bare"),
    ("Serial No. 123-456-7890", "serial number"),
    ("Coordinates 37.7749, -122.4194", "coordinates"),
    ("Population grew from 1,234,567 to 2,345,678.", "large numbers"),
    ("Call 911 or 112 in an emergency", "short emergency numbers"),
    ("Build 20240115.3 passed", "build number"),
    ("The range 100-200-300 is arbitrary", "dash triplet"),
    ("Ratio 3:2:1 and score 10-2", "scores"),
    ("+1 is the unary plus of 415", "plus sign in prose"),
    ("Version 2.14.1 was released on 2024.03.07", "version and dotted date"),
]:
    add(text, [], note)

# ---------------------------------------------------------------- IPs
IP_TEMPLATES = [
    "The server is at {v}.",
    "ssh admin@{v}",
    "Blocked requests from {v} after 5 failures",
    "服务器地址{v}无法访问",
    "Der Host {v} antwortet nicht.",
    "curl http://{v}/health",
]
ips = [
    "192.168.1.10", "10.0.0.1", "8.8.8.8", "172.16.254.1", "203.0.113.45", "255.255.255.0", "127.0.0.1",
    "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "fe80::1ff:fe23:4567:890a", "::1",
    "::ffff:192.0.2.128", "2606:4700:4700::1111", "100.64.12.7",
]  # fmt: skip
for i, ip in enumerate(ips):
    add(IP_TEMPLATES[i % len(IP_TEMPLATES)].format(v=ip), [("ip_address", ip)], "IP address")
add("Listening on 0.0.0.0:8080 and [2001:db8::42]:443", [("ip_address", "0.0.0.0"), ("ip_address", "2001:db8::42")], "with ports")
add("GET http://192.168.0.1:8080/admin HTTP/1.1", [("ip_address", "192.168.0.1")], "URL with port")
for text, note in [
    ("Upgrade to version 1.2.3.4 now", "version string"),
    ("Released v1.2.3.4 yesterday", "v-prefixed version"),
    ("Package 1.2.3.4.5 is out", "five-part dotted run"),
    ("Requires Python 3.11.7 and node 1.0.0", "short versions"),
    ("Value 999.1.1.1 is not an address", "octet out of range"),
    ("OID 1.3.6.1.4.1.311 identifies Microsoft", "OID"),
    ("See section 3.2.1.4 for details", "section number"),
    ("The alarm rang at 10:30:45", "time"),
    ("MAC 00:1A:2B:3C:4D:5E is blocked", "MAC address"),
    ("Use std::vector and log::debug in C++/Rust", "scope operators"),
    ("The ratio a::b is weird", "short hex pair"),
    ("Leading zeros 01.02.03.04 are not valid", "leading zeros"),
]:
    add(text, [], note)

# ---------------------------------------------------------------- e-mail
EMAIL_TEMPLATES = [
    "Contact {v} for details.",
    "请联系{v}谢谢",
    "Email: {v}",
    "Schreiben Sie an {v}.",
    "Envoyez un mail à <{v}>.",
    "連絡先は{v}です。",
    "Пишите на {v}, ответим быстро.",
    "From: \"Jane\" <{v}>",
]
emails = [
    "john@example.com", "jane.doe+news@mail.example.co.uk", "first_last@sub.domain.org", "a.b@c-d.io",
    "JOHN.SMITH@EXAMPLE.COM", "support@xn--80ak6aa92e.com", "dev-team@company.dev", "o'brien@example.ie",
    "user123@gmail.com", "li.wei@qq.com", "x@y.co", "sales@example.museum", "ops@k8s.example.net",
    "mail.me@example.com", "hello@startup.ai", "m.mueller@beispiel.de",
]  # fmt: skip
for i, email in enumerate(emails):
    add(EMAIL_TEMPLATES[i % len(EMAIL_TEMPLATES)].format(v=email), [("email", email)], "email")
add("mailto:alice@example.org", [("email", "alice@example.org")], "mailto")
add("Send it to bob@example.com.", [("email", "bob@example.com")], "trailing period")
for text, note in [
    ("Send to user@localhost for testing", "localhost"),
    ("The address a@b is not valid", "no TLD"),
    ("Ping @channel and @john about it", "mentions"),
    ("Use icon@2x.png for retina screens", "asset name"),
    ("git clone git@github.com:org/repo.git", "SSH remote"),
    ("foo@bar has no domain", "no dot"),
    ("npm i @types/node", "npm scope"),
    ("Reach me at name at domain dot com", "obfuscated words"),
    ("The decorator @app.route('/') registers it", "python decorator"),
    ("Price is 5@10.00 each", "at-price"),
]:
    add(text, [], note)

# ---------------------------------------------------------------- secrets
def rand(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


UP = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRET_TEMPLATES = [
    "export AWS_ACCESS_KEY_ID={v}",
    "My key is {v}, please debug",
    "token: \"{v}\"",
    "密钥{v}不要泄露",
    "Authorization: Bearer {v}",
    "config = {{'api_key': '{v}'}}",
]
secrets = [
    "AKIA" + rand(UP, 16), "ASIA" + rand(UP, 16), "AKIA" + rand(UP, 16),
    "ghp_" + rand(ALNUM, 36), "gho_" + rand(ALNUM, 36), "ghs_" + rand(ALNUM, 36), "ghu_" + rand(ALNUM, 36),
    "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59),
    "sk-" + rand(ALNUM, 48), "sk-proj-" + rand(ALNUM + "_-", 64).strip("-_") + "Ab1",
    "sk-ant-api03-" + rand(ALNUM + "_-", 80).strip("-_") + "AA",
    "xoxb-" + rand("0123456789", 12) + "-" + rand("0123456789", 13) + "-" + rand(ALNUM, 24),
    "xoxp-" + rand("0123456789", 12) + "-" + rand("0123456789", 12) + "-" + rand(ALNUM, 32),
]  # fmt: skip
jwt = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
secrets.append(jwt)
secrets.append("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiNDIifQ." + rand(ALNUM + "_-", 86))
for i, value in enumerate(secrets):
    add(SECRET_TEMPLATES[i % len(SECRET_TEMPLATES)].format(v=value), [("secret", value)], "vendor secret")
pem_body = "\n".join(rand(ALNUM + "+/", 64) for _ in range(6))
pem = f"-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"
add(f"Here is my key:\n{pem}\nthanks", [("secret", pem)], "PEM block")
pem2 = f"-----BEGIN PRIVATE KEY-----\n{pem_body[:200]}\n-----END PRIVATE KEY-----"
add(f"key.pem contains {pem2}", [("secret", pem2)], "PKCS8 PEM block")
for text, note in [
    ("AWS example key AKIAIOSFODNN7EXAMPLE from the docs", "AWS documentation placeholder"),
    ("secret: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS docs secret placeholder"),
    ("OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "sk- placeholder"),
    ("OPENAI_API_KEY=sk-your_api_key_here_1234567890", "your_ placeholder"),
    ("api_key = 'sk-<your-key-goes-here-please-123>'", "angle placeholder"),
    ("token ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "GitHub placeholder"),
    ("ANTHROPIC_API_KEY=sk-ant-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "Anthropic placeholder"),
    ("SLACK=xoxb-0000000000-0000000000-aaaaaaaaaaaaaaaaaaaaaaaa", "Slack all-same placeholder"),
    ("The word sk-learn is a library, as is task-runner-framework", "sk- in prose"),
    ("Header eyJub3QiOiJhIGp3dCJ9.eyJ4IjoxfQ.abc is not a token", "JWT header without alg"),
    ("eyJhbGciOiJIUzI1NiJ9.notbase64!!.sig", "broken JWT"),
    ("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----", "PEM placeholder"),
    ("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----", "public key"),
    ("AKIA1234 is too short to be a key", "short AKIA"),
    ("Use ghp_ followed by 36 characters", "prefix only"),
]:
    add(text, [], note)

# ---------------------------------------------------------------- hashes, UUIDs, prose
for text, note in [
    ("md5 d41d8cd98f00b204e9800998ecf8427e", "md5"),
    ("sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1"),
    ("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256"),
    ("request id 123e4567-e89b-12d3-a456-426614174000", "UUID"),
    ("commit 4c43c9ac690d2cbe4f3e0ff65676e7acae59b437 fixed it", "git sha"),
    ("docker image sha256:4111111111111111111111111111111111111111111111111111111111111111", "digest of ones"),
    ("The quick brown fox jumps over the lazy dog.", "prose"),
    ("We shipped 12 items in 2023 and 340 in 2024.", "small numbers"),
    ("Room 101, floor 7, building 3B", "address-ish numbers"),
    ("今天天气很好，我们去公园散步吧。", "Chinese prose"),
    ("Die Besprechung findet um 14:30 Uhr in Raum 2.17 statt.", "German prose"),
    ("Le rendez-vous est le 15/01/2024 à 10h30.", "French prose"),
    ("Temperature 36.6°C, pressure 120/80", "medical numbers"),
    ("pi is 3.14159265358979323846", "long decimal"),
    ("base64 aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSBzZWNyZXQ=", "benign base64"),
]:
    add(text, [], note)

# ---------------------------------------------------------------- mixed
add(
    "Hi, I'm Ana (ana.lopez@example.es, +34 612 345 678). Card 4111 1111 1111 1111, IBAN ES91 2100 0418 4502 0005 1332.",
    [("email", "ana.lopez@example.es"), ("phone", "+34 612 345 678"), ("credit_card", "4111 1111 1111 1111"),
     ("iban", "ES91 2100 0418 4502 0005 1332")],
    "mixed",
)  # fmt: skip
add(
    "用户张三，邮箱zhangsan@example.cn，电话13800138000，卡号6200000000000005。",
    [("email", "zhangsan@example.cn"), ("phone", "13800138000"), ("credit_card", "6200000000000005")],
    "mixed CJK glued",
)
add(
    "Server 10.1.2.3 rejected key AKIA" + "Z7" * 8 + " from ops@example.com on 2024-01-15",
    [("ip_address", "10.1.2.3"), ("secret", "AKIA" + "Z7" * 8), ("email", "ops@example.com")],
    "mixed ops log",
)
add(
    "SSN 123-45-6789 and phone (415) 555-0132; order #415-555-0133 is not a phone",
    [("ssn", "123-45-6789"), ("phone", "(415) 555-0132")],
    "mixed with guard",
)
add(
    "Two cards: 5555555555554444 and 378282246310005; same card again 5555 5555 5555 4444.",
    [("credit_card", "5555555555554444"), ("credit_card", "378282246310005"), ("credit_card", "5555 5555 5555 4444")],
    "repeated cards",
)

# ---------------------------------------------------------------- batch 2: harder, written before tuning
for text, expect, note in [
    ("Visa 4111-1111-1111-1111.", [("credit_card", "4111-1111-1111-1111")], "dashed card, sentence end"),
    ("Refund to (4012 8888 8888 1881) please", [("credit_card", "4012 8888 8888 1881")], "card in parentheses"),
    ('{"card":"5555555555554444","cvv":"123"}', [("credit_card", "5555555555554444")], "card in JSON"),
    ("Amex 3782 822463 10005 on file", [("credit_card", "3782 822463 10005")], "Amex 4-6-5"),
    ('{"phone":"+14155550132"}', [("phone", "+14155550132")], "E.164 in JSON"),
    ("tel:+1-415-555-0132", [("phone", "+1-415-555-0132")], "tel URI"),
    ("Office (415)555-0132 ext 4", [("phone", "(415)555-0132")], "no space after area"),
    ("Dial +1.415.555.0132 now", [("phone", "+1.415.555.0132")], "dotted +1"),
    ("London office +44 (0)20 7946 0958", [("phone", "+44 (0)20 7946 0958")], "trunk zero"),
    ("Mobile +44 7911 123456", [("phone", "+44 7911 123456")], "UK mobile"),
    ("Toll-free 1 (800) 555-0199", [("phone", "1 (800) 555-0199")], "1 (800)"),
    ("문의는kim@example.kr로 보내주세요", [("email", "kim@example.kr")], "email glued to Hangul"),
    ("Write to info@my-company.co.jp today", [("email", "info@my-company.co.jp")], "hyphen domain"),
    ("Alerts go to x@mail2.example.com", [("email", "x@mail2.example.com")], "digit label"),
    ("IP地址：192.168.0.100", [("ip_address", "192.168.0.100")], "IP after full-width colon"),
    ("Gateway (10.0.0.254) is down", [("ip_address", "10.0.0.254")], "IP in parentheses"),
    ("Allow 10.20.0.0/16 in the firewall", [("ip_address", "10.20.0.0")], "CIDR"),
    ("ip=172.31.5.9, port=22", [("ip_address", "172.31.5.9")], "key=value"),
    ("Host 2001:DB8:0:0:8:800:200C:417A replied", [("ip_address", "2001:DB8:0:0:8:800:200C:417A")], "upper IPv6"),
    ("ping fe80::1%eth0", [("ip_address", "fe80::1")], "IPv6 with zone"),
    ("SSN#: 536-22-8746", [("ssn", "536-22-8746")], "SSN with #"),
    ("ssn=536228746", [("ssn", "536228746")], "unformatted SSN key=value"),
    ('"iban":"NL91ABNA0417164300"', [("iban", "NL91ABNA0417164300")], "IBAN in JSON"),
    ("Cookie: session=" + jwt + "; Path=/", [("secret", jwt)], "JWT in cookie"),
    ("AWS_ACCESS_KEY_ID: ASIAQ3EGQW2T7OXKR5ZM", [("secret", "ASIAQ3EGQW2T7OXKR5ZM")], "ASIA key"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36", [], "user agent"),
    ("SNMP OID .1.3.6.1.2.1.1.5.0", [], "OID with leading dot"),
    ("Order 1234-5678-9012-3456 confirmed", [], "card-shaped order id"),
    ("Constant 0x4111111111111111 in the code", [], "hex literal"),
    ("SKU 4111111111111111X is sold out", [], "glued suffix"),
    ("US patent 10,123,456 expired", [], "patent number"),
    ("Timestamp 2024-01-15T10:30:00+01:00", [], "ISO with offset"),
    ("Elapsed 12:34:56.789", [], "duration"),
    ("<div class='task-list-item-checkbox-container'>", [], "sk- inside CSS class"),
    ("payload eyJmb28iOiJiYXIifQ== is plain JSON", [], "base64 JSON, not a JWT"),
    ("Key AKIAEXAMPLEKEY123456 is from a tutorial", [], "AKIA placeholder"),
    ("Fingerprint SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", [], "ssh fingerprint"),
    ("Error 0xC0000005 at 7FFA:1234", [], "hex address"),
    ("Tagged v2.3.4.1 for release", [], "v-tag"),
    ("Flight UA 1234 departs 10:45 from gate 22", [], "flight"),
    ("Between 1999-2001 sales rose 300-400%", [], "year ranges"),
    ("Lat/long 40.7128,-74.0060", [], "lat/long"),
    ("Windows build 10.0.19045.3693", [], "windows build"),
    ("Call me at 555-0132 later", [], "7-digit local number (not covered)"),
    ("The code 212-555-01 is incomplete", [], "truncated phone"),
    ("Card ending in 1111, expiring 12/27", [], "last four"),
    ("SSN: XXX-XX-6789", [], "masked SSN"),
    ("Use sk-proj-****************************1234 in the example", [], "masked key"),
    ("acct 12345678 routing 021000021", [], "bank account + routing"),
    ("Matrix 3x3 with values 1 2 3 4 5 6 7 8 9", [], "spaced digits"),
]:
    add(text, expect, note)


def main() -> None:
    with (HERE / "cases.jsonl").open("w", encoding="utf-8") as handle:
        for case in cases:
            handle.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
