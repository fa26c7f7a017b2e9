"""Clearly fake secrets, one per rule, each with the parts that must never be written.

None of these is a real credential: they are made up (or vendors' documented
examples) and follow only the shape of the real thing.
"""

from __future__ import annotations

PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAfakefakefakeFAKEFAKEfakeKEYbodyLINE1xx\n"
    "FAKEkeyBODYline2notArealKEYjustTESTdata0123456789abcd\n"
    "-----END RSA PRIVATE KEY-----"
)

# (name, text as it may appear, substrings that must not survive)
CORPUS: list[tuple[str, str, list[str]]] = [
    ("aws_key_id", "AKIAIOSFODNN7EXAMPLE", ["AKIAIOSFODNN7EXAMPLE"]),
    (
        "aws_secret",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    ),
    ("github", "ghp_FAKEfake0123456789FAKEfake0123456789ab", ["ghp_FAKEfake0123456789"]),
    (
        "github_pat",
        "github_pat_11FAKEFAKE0_fakefakefakefakeFAKEFAKEfake0123456789",
        ["github_pat_11FAKEFAKE0"],
    ),
    ("gitlab", "glpat-FAKEfakeFAKEfake1234", ["glpat-FAKEfakeFAKEfake1234"]),
    ("slack", "xoxb-123456789012-1234567890123-FAKEfakeFAKEfake", ["xoxb-123456789012"]),
    (
        "slack_webhook",
        "https://hooks.slack.com/services/T00000000/B00000000/FAKEfakeFAKEfake",
        ["T00000000/B00000000", "FAKEfakeFAKEfake"],
    ),
    ("stripe", "sk_live_FAKEfakeFAKEfake0123456789", ["sk_live_FAKEfake"]),
    ("anthropic", "sk-ant-api03-FAKEfakeFAKEfake-0123456789_abcdefFAKE", ["sk-ant-api03-FAKE"]),
    ("openai", "sk-proj-FAKEfakeFAKEfake0123456789abcdefFAKE", ["sk-proj-FAKEfake"]),
    ("google", "AIzaSyFAKEfakeFAKEfake0123456789abcdefg", ["AIzaSyFAKEfake"]),
    (
        "bearer",
        "Authorization: Bearer abcDEF0123456789ghiJKL.fake-token",
        ["abcDEF0123456789ghiJKL"],
    ),
    ("bearer_bare", "curl -H 'bearer FAKEtoken0123456789abcdef'", ["FAKEtoken0123456789abcdef"]),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWtlLXVzZXIifQ.ZmFrZS1zaWduYXR1cmUtbm90LXJlYWw",
        ["eyJzdWIiOiJmYWtlLXVzZXIifQ", "ZmFrZS1zaWduYXR1cmUtbm90LXJlYWw"],
    ),
    ("private_key", PRIVATE_KEY, ["fakefakefakeFAKEFAKEfakeKEYbodyLINE1xx", "notArealKEY"]),
    (
        "url_credentials",
        "git clone https://deploy:s3cr3t-Fake-Pass@git.example.com/repo.git",
        ["s3cr3t-Fake-Pass"],
    ),
    (
        "postgres_url",
        "DATABASE_URL=postgres://app:hunter2-FAKE-pw@db.internal:5432/app",
        ["hunter2-FAKE-pw"],
    ),
    (
        "conn_string",
        "Server=db;Database=app;User Id=sa;Password=Fake!Passw0rd;",
        ["Fake!Passw0rd"],
    ),
    ("env_password", "export DB_PASSWORD='correct-horse-FAKE'", ["correct-horse-FAKE"]),
    ("env_api_key", "MY_SERVICE_API_KEY=FAKEapikey0123456789", ["FAKEapikey0123456789"]),
    ("json_secret", '{"client_secret": "FAKE-client-secret-value"}', ["FAKE-client-secret-value"]),
    ("yaml_token", "auth_token: FAKEyamlTOKEN0123", ["FAKEyamlTOKEN0123"]),
    ("email", "contact alice.smith@example.org now", ["alice.smith@example.org"]),
    ("npm", "npm_FAKEfakeFAKEfake0123456789abcdefFAKE", ["npm_FAKEfakeFAKEfake"]),
    ("hf", "hf_FAKEfakeFAKEfake0123456789abcdefFA", ["hf_FAKEfakeFAKEfake"]),
    ("home_other_user", "/home/zq9otheruser/src/app/main.py", ["zq9otheruser"]),
    ("home_mac", "/Users/zq9macuser/Library/file.txt", ["zq9macuser"]),
]

# A cloud service-account key file as a tool reads or a user pastes it: JSON text in
# a string, the PEM's newlines escaped as \n (the rule must not stop at the first one).
SERVICE_ACCOUNT_JSON = (
    '{"type": "service_account", "project_id": "fake-project", '
    '"private_key_id": "0123456789abcdefFAKEfake0123456789abcdef", '
    '"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvFAKEsaBODYlineONEnotAkey0123\\n'
    'FAKEsaBODYlineTWOnotAkey4567==\\n-----END PRIVATE KEY-----\\n", '
    '"client_email": "fake@fake-project.iam.gserviceaccount.com"}'
)
_HEX = "0123456789abcdef"


def _fill(prefix: str, n: int, alphabet: str = "FAKEfake0123456789") -> str:
    """`prefix` and `n` characters of a clearly fake body."""
    return prefix + (alphabet * (n // len(alphabet) + 1))[:n]


CORPUS += [
    # PEM private keys inside JSON strings, with escaped newlines, under any key
    (
        "pem_in_json_service_account",
        SERVICE_ACCOUNT_JSON,
        [
            "MIIEvFAKEsaBODYlineONEnotAkey0123",
            "FAKEsaBODYlineTWOnotAkey4567",
            "0123456789abcdefFAKE",
        ],
    ),
    (
        "pem_in_json_other_key",
        '{"pem": "-----BEGIN EC PRIVATE KEY-----\\nMHcFAKEecBODYnotAkey\\n'
        '-----END EC PRIVATE KEY-----"}',
        ["MHcFAKEecBODYnotAkey"],
    ),
    (
        "pem_yaml_unquoted",
        "ssh_private_key: -----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaFAKEopensshBODY",
        ["b3BlbnNzaFAKEopensshBODY"],
    ),
    # quoted assignment values holding punctuation and spaces
    (
        "django_secret_single_quotes",
        "SECRET_KEY = 'django-insecure-FAKE0k&*(x,y;z!q@w#e%r^t)u=i+o'",
        ["django-insecure-FAKE0k", "y;z!q@w#e%r^t)u=i+o"],
    ),
    (
        "quoted_password_with_spaces",
        'db_password: "correct horse, battery; FAKEstaple"',
        ["correct horse", "battery; FAKEstaple"],
    ),
    ("js_template_key", "const apiKey = `FAKE-js key;with,punct`;", ["FAKE-js key", "with,punct"]),
    (
        "escaped_json_secret",
        '{\\"client_secret\\": \\"FAKE escaped, secret\\"}',
        ["FAKE escaped, secret"],
    ),
    ("curl_user", "curl -u deploy:FAKEcurlPass0123 https://api.example.com", ["FAKEcurlPass0123"]),
    ("cli_password", "mysqldump --password=FAKEcliPass0123 app", ["FAKEcliPass0123"]),
    # token formats of gitleaks' default rules that have a recognisable prefix
    ("aws_bedrock", _fill("ABSK", 120), [_fill("ABSK", 120)[4:60]]),
    ("slack_app", "xapp-1-A0FAKE0FAKE-1234567890123-fakefake0123", ["A0FAKE0FAKE-1234567890123"]),
    (
        "discord_webhook",
        "https://discord.com/api/webhooks/123456789012345678/FAKEfakeFAKEfake-webhook",
        ["FAKEfakeFAKEfake-webhook"],
    ),
    ("perplexity", _fill("pplx-", 48), [_fill("pplx-", 48)]),
    ("groq", _fill("gsk_", 52), [_fill("gsk_", 52)]),
    ("alibaba", "LTAIFAKEfake0123456789ab", ["LTAIFAKEfake0123456789ab"]),
    ("azure_ad_secret", "abc8Q~FAKEfake0123456789FAKEfake01234", ["FAKEfake0123456789FAKEfake"]),
    ("digitalocean", _fill("dop_v1_", 64, _HEX), [_fill("dop_v1_", 64, _HEX)]),
    ("heroku", _fill("HRKU-AA", 58), [_fill("HRKU-AA", 58)]),
    ("databricks", _fill("dapi", 32, _HEX), [_fill("dapi", 32, _HEX)]),
    ("vault", _fill("hvs.", 96), [_fill("hvs.", 96)]),
    ("terraform", "FAKEfake012345.atlasv1." + "FAKEfake0123" * 6, ["FAKEfake012345.atlasv1."]),
    ("doppler", _fill("dp.pt.", 43), [_fill("dp.pt.", 43)]),
    ("pulumi", _fill("pul-", 40, _HEX), [_fill("pul-", 40, _HEX)]),
    ("pypi", _fill("pypi-AgEIcHlwaS5vcmc", 60), [_fill("pypi-AgEIcHlwaS5vcmc", 60)]),
    ("rubygems", _fill("rubygems_", 48, _HEX), [_fill("rubygems_", 48, _HEX)]),
    ("atlassian", _fill("ATATT3", 186), [_fill("ATATT3", 186)[:80]]),
    ("sentry", _fill("sntryu_", 64, _HEX), [_fill("sntryu_", 64, _HEX)]),
    ("grafana", _fill("glsa_", 40), [_fill("glsa_", 40)]),
    ("new_relic", _fill("NRAK-", 27), [_fill("NRAK-", 27)]),
    ("linear", _fill("lin_api_", 40), [_fill("lin_api_", 40)]),
    ("notion", _fill("ntn_", 46), [_fill("ntn_", 46)]),
    ("postman", "PMAK-" + (_HEX * 2)[:24] + "-" + (_HEX * 3)[:34], ["PMAK-0123"]),
    ("shopify", _fill("shpat_", 32, _HEX), [_fill("shpat_", 32, _HEX)]),
    ("square", _fill("sq0atp-", 22), [_fill("sq0atp-", 22)]),
    (
        "sendinblue",
        _fill("xkeysib-", 64, _HEX) + "-FAKEfake01234567",
        [_fill("xkeysib-", 64, _HEX)],
    ),
    ("mailgun", _fill("key-", 32, _HEX), [_fill("key-", 32, _HEX)]),
    ("telegram", "123456789:AAFAKEfake0123456789FAKEfake0123456", ["AAFAKEfake0123456789FAKE"]),
    (
        "age",
        _fill("AGE-SECRET-KEY-1", 58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
        ["AGE-SECRET-KEY-1QPZ"],
    ),
    ("stripe_webhook", _fill("whsec_", 32), [_fill("whsec_", 32)]),
    ("twilio", "SK" + _HEX * 2, ["SK" + _HEX * 2]),
    (
        "redis_url",
        "REDIS_URL=redis://:FAKEredisPass0123@cache.internal:6379/0",
        ["FAKEredisPass0123"],
    ),
]
