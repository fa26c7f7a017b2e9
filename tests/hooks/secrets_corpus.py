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
