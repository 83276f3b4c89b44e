"""The rules a token must pass besides its signature (audience, issuer, user and admin claims),
the algorithm allow-list, and the settings that configure them: refused at start in one line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.start_refusals import refused_at_start
from wsguard import jwt_algorithms
from wsguard.claims import MISSING, AdminClaim, ClaimRules, claim_at
from wsguard.cli import configure_serve, settings_from
from wsguard.server.auth import MAX_TOKEN_BYTES, TokenAuthority, Unauthorized
from wsguard.server.jwt_keys import KeySource, SecretKey, signing_keys

SECRET = "a-shared-secret-of-at-least-32-bytes"


def _token(**claims: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


def _authority(rules: ClaimRules) -> TokenAuthority:
    sources: list[KeySource] = [SecretKey(SECRET)]
    return TokenAuthority(sources, leeway=0, issuing_secret=None, rules=rules)


def test_claim_paths_reach_nested_and_namespaced_claims() -> None:
    claims = {
        "sub": "u",
        "realm_access": {"roles": ["admin"]},
        "https://wsguard.example/roles": ["ops"],
        "cognito:username": "c",
    }
    assert claim_at(claims, "realm_access.roles") == ["admin"]
    assert claim_at(claims, "https://wsguard.example/roles") == ["ops"]
    assert claim_at(claims, "cognito:username") == "c"
    assert claim_at(claims, "realm_access.missing") is MISSING
    assert claim_at(claims, "sub.deeper") is MISSING


@pytest.mark.parametrize(
    ("rule", "claims", "admin"),
    [
        ("admin=true", {"admin": True}, True),
        ("admin=true", {"admin": "true"}, True),
        ("admin=true", {"admin": False}, False),
        ("admin=true", {"admin": 1}, False),
        ("admin=true", {}, False),
        ("realm_access.roles=admin", {"realm_access": {"roles": ["user", "admin"]}}, True),
        ("realm_access.roles=admin", {"realm_access": {"roles": ["user"]}}, False),
        ("realm_access.roles=admin", {"realm_access": {"roles": "admin"}}, True),
        ("permissions=publish:events", {"permissions": ["publish:events"]}, True),
        ("role=admin", {"role": {"name": "admin"}}, False),
        ("level=3", {"level": 3}, True),
    ],
)
def test_the_admin_claim_holds_when_equal_or_listed(rule: str, claims: dict[str, Any], admin: bool) -> None:
    assert AdminClaim.parse(rule).holds(claims) is admin


@pytest.mark.parametrize("text", ["admin", "=true", "admin=", "a..b=c"])
def test_a_malformed_admin_claim_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"PATH=VALUE|VALUE|claim path"):
        AdminClaim.parse(text)


def test_audience_is_required_when_set_and_must_match_one() -> None:
    authority = _authority(ClaimRules(audiences=("app-a", "app-b")))
    assert authority.verify(_token(sub="u1", aud="app-b")).user_id == "u1"
    assert authority.verify(_token(sub="u2", aud=["other", "app-a"])).user_id == "u2"
    for bad in (_token(sub="u3", aud="other"), _token(sub="u4")):
        with pytest.raises(Unauthorized, match=r"(?i)aud"):
            authority.verify(bad)


def test_without_an_audience_a_token_meant_for_one_is_refused() -> None:
    authority = _authority(ClaimRules())
    assert authority.verify(_token(sub="u")).user_id == "u"
    with pytest.raises(Unauthorized, match="audience"):
        authority.verify(_token(sub="u", aud="someone-else"))


def test_issuer_is_required_when_set_and_compared_exactly() -> None:
    issuer = "https://wsguard-test.eu.auth0.com/"
    authority = _authority(ClaimRules(issuer=issuer))
    assert authority.verify(_token(sub="u", iss=issuer)).user_id == "u"
    for bad in (_token(sub="u", iss=issuer.rstrip("/")), _token(sub="u", iss=issuer + "x"), _token(sub="u")):
        with pytest.raises(Unauthorized, match=r"(?i)iss"):
            authority.verify(bad)


def test_the_user_claim_names_the_user_and_must_be_a_non_empty_string() -> None:
    authority = _authority(ClaimRules(user_claim="profile.login", admin_claim=AdminClaim.parse("g=admin")))
    identity = authority.verify(_token(sub="opaque", profile={"login": "alice"}, g=["admin"]))
    assert (identity.user_id, identity.admin) == ("alice", True)
    for bad in (_token(sub="x"), _token(profile={"login": ""}), _token(profile={"login": 7})):
        with pytest.raises(Unauthorized, match=r"profile\.login"):
            authority.verify(bad)


def test_dev_tokens_pass_the_configured_rules() -> None:
    rules = ClaimRules(
        ("app",), "https://issuer.example", "realm.user", AdminClaim.parse("realm_access.roles=admin")
    )
    authority = TokenAuthority([SecretKey(SECRET)], leeway=0, issuing_secret=SECRET, rules=rules)
    identity = authority.verify(authority.issue("dev-user", admin=True))
    assert (identity.user_id, identity.admin) == ("dev-user", True)
    assert authority.verify(authority.issue("plain")).admin is False


def test_oversized_tokens_are_refused_before_parsing() -> None:
    authority = _authority(ClaimRules())
    token = _token(sub="u", padding="x" * MAX_TOKEN_BYTES)
    with pytest.raises(Unauthorized, match=f"over {MAX_TOKEN_BYTES} bytes"):
        authority.verify(token)


def test_every_algorithm_named_is_one_pyjwt_has() -> None:
    assert set(jwt_algorithms.KNOWN) <= set(jwt.algorithms.get_default_algorithms())
    assert "none" not in jwt_algorithms.KNOWN


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**entry, **extra}


def test_a_jwks_yields_only_public_signing_keys_of_allowed_algorithms() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    document = {
        "keys": [
            _jwk(rsa_key, kid="plain"),
            _jwk(rsa_key, kid="declared", alg="RS256"),
            _jwk(rsa_key, kid="encryption", use="enc", alg="RSA-OAEP"),
            _jwk(ec_key, kid="ec"),
            _jwk(rsa_key, kid="rs512", alg="RS512"),
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "shared", "alg": "HS256"},
            "not a key",
        ]
    }
    keys = signing_keys(document, jwt_algorithms.DEFAULT_PUBLIC)
    assert set(keys) == {"plain", "declared", "ec"}
    assert keys["plain"].algorithms == ("RS256", "PS256")
    assert keys["declared"].algorithms == ("RS256",)
    assert keys["ec"].algorithms == ("ES256",)
    with pytest.raises(ValueError, match=r"no public signing key .* oct"):
        signing_keys({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]}, jwt_algorithms.DEFAULT_PUBLIC)
    broken_documents: list[object] = [{}, {"keys": "x"}, [], "text"]
    for broken in broken_documents:
        with pytest.raises(ValueError, match="not a JWKS"):
            signing_keys(broken, jwt_algorithms.DEFAULT_PUBLIC)


def _settings(*args: str, environ: dict[str, str] | None = None) -> Any:
    parser = argparse.ArgumentParser()
    configure_serve(parser)
    return settings_from(parser.parse_args(list(args)), environ or {})


def test_lists_come_from_repeated_flags_or_comma_separated_variables() -> None:
    settings = _settings(
        "--jwks-url",
        "https://a.example/jwks",
        "--jwks-url",
        "https://b.example/jwks",
        "--jwt-audience",
        "one",
        "--jwt-algorithm",
        "RS256",
    )
    assert settings.jwks_urls == ("https://a.example/jwks", "https://b.example/jwks")
    assert (settings.jwt_audiences, settings.jwt_algorithms) == (("one",), ("RS256",))
    environ = {
        "WSGUARD_JWKS_URL": "https://a.example/jwks, https://b.example/jwks",
        "WSGUARD_JWT_AUDIENCE": "one,two",
        "WSGUARD_JWT_ISSUER": "https://a.example/",
        "WSGUARD_JWT_USER_CLAIM": "username",
        "WSGUARD_JWT_ADMIN_CLAIM": "cognito:groups=admin",
        "WSGUARD_API_KEYS": "key-number-one-0123456,key-number-two-0123456",
    }
    settings = _settings(environ=environ)
    assert settings.jwks_urls == ("https://a.example/jwks", "https://b.example/jwks")
    assert settings.jwt_audiences == ("one", "two")
    assert (settings.jwt_issuer, settings.jwt_user_claim) == ("https://a.example/", "username")
    assert settings.jwt_admin_claim == "cognito:groups=admin"
    assert settings.api_keys == ("key-number-one-0123456", "key-number-two-0123456")
    assert "key-number" not in repr(settings)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(public)
    return str(path)


@pytest.mark.parametrize(
    ("args", "named", "says"),
    [
        (["--jwt-secret", SECRET, "--jwt-algorithm", "none"], "--jwt-algorithm", "never"),
        (["--jwt-secret", SECRET, "--jwt-algorithm", "NONE"], "--jwt-algorithm", "never"),
        (["--jwks-url", "https://a.example/j", "--jwt-algorithm", "HS256"], "--jwt-algorithm", "HMAC"),
        (["--jwt-secret", SECRET, "--jwt-algorithm", "RS256"], "--jwt-algorithm", "public key"),
        (["--jwt-secret", SECRET, "--jwt-algorithm", "XS999"], "--jwt-algorithm", "unknown"),
        (["--jwks-url", "ftp://a.example/j"], "--jwks-url", "https://"),
        (["--jwt-secret", SECRET, "--jwt-admin-claim", "admin"], "--jwt-admin-claim", "PATH=VALUE"),
        (["--jwt-secret", SECRET, "--jwt-user-claim", "a..b"], "--jwt-user-claim", "claim path"),
        (["--jwt-secret", SECRET, "--api-key", "short"], "--api-key", "at least 16"),
        (["--jwt-secret", SECRET, "--api-key-file", "/no/such/file"], "--api-key-file", "cannot use"),
    ],
)
def test_bad_identity_settings_exit_2_with_one_line_naming_the_flag(
    args: list[str], named: str, says: str
) -> None:
    line = refused_at_start("--port", "0", *args)
    assert named in line, line
    assert says in line, line


def test_a_public_key_of_a_family_not_allowed_is_refused_at_start(tmp_path: Path) -> None:
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()), tmp_path / "ec.pem")
    result = subprocess.run(
        [sys.executable, "-m", "wsguard", "serve", "--jwt-public-key", ec_pem, "--jwt-algorithm", "RS256"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--jwt-public-key" in result.stderr


def test_an_api_key_file_with_a_bad_line_is_refused_without_showing_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# service keys\n\ngood-key-0123456789abcdef\nshort-secret\n")
    with pytest.raises(Exception, match="line 4: an API key must be at least 16") as refused:
        _settings("--jwt-secret", SECRET, "--api-key-file", str(keys))
    assert "short-secret" not in str(refused.value)
