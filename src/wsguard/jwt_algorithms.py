"""Which JWT algorithms a server accepts, per kind of key, without importing PyJWT.

The algorithm a token names is only honoured when the key that verifies it is of that family:
an HMAC algorithm never verifies with a public key (a public key is public, so an HS256 token
"signed" with it proves nothing), and ``none`` is never accepted. Settings validation uses
:func:`problem_with`, so a bad combination is refused at start, in one line.
"""

HMAC = ("HS256", "HS384", "HS512")
RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
"""JWK curve names (``crv``); :mod:`wsguard.server.jwt_keys` maps cryptography's to these."""
EDDSA = ("EdDSA",)
ASYMMETRIC = RSA + tuple(EC_BY_CURVE.values()) + EDDSA
KNOWN = HMAC + ASYMMETRIC

DEFAULT_SECRET = ("HS256",)
DEFAULT_PUBLIC = ("RS256", "ES256", "PS256", "EdDSA")
"""What public keys and JWKS verify unless ``--jwt-algorithm`` says otherwise."""


def for_secret(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The algorithms a shared secret verifies: the HMAC ones allowed (HS256 by default)."""
    chosen = tuple(a for a in allowed if a in HMAC)
    return chosen if allowed and chosen else DEFAULT_SECRET


def for_public(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The algorithms public keys verify: the asymmetric ones allowed, or the defaults."""
    return tuple(a for a in allowed if a in ASYMMETRIC) if allowed else DEFAULT_PUBLIC


def problem_with(allowed: tuple[str, ...], *, secret: bool, public: bool, dev: bool) -> str | None:
    """Why this allow-list cannot work with these keys, or None.

    ``secret``: ``--jwt-secret`` is given; ``public``: a public key, JWKS file or JWKS URL is;
    ``dev``: the random ``--dev`` secret exists (it always verifies HS256, whatever the list).
    """
    for name in allowed:
        if name.lower() == "none":
            return "'none' is never accepted: a token without a signature proves nothing"
        if name not in KNOWN:
            return f"unknown algorithm {name!r}; one of {', '.join(KNOWN)}"
    if not allowed:
        return None
    hmac = [a for a in allowed if a in HMAC]
    asymmetric = [a for a in allowed if a in ASYMMETRIC]
    if hmac and not secret and not dev:
        return f"{hmac[0]} is an HMAC algorithm: it verifies only with --jwt-secret, never with a public key"
    if asymmetric and not public:
        return f"{asymmetric[0]} needs a public key (--jwt-public-key, --jwks-file or --jwks-url)"
    if secret and not hmac:
        return "--jwt-secret needs an HMAC algorithm (HS256, HS384 or HS512) in the list"
    if public and not asymmetric:
        return "a public key needs an asymmetric algorithm (RS256, ES256, PS256, EdDSA...) in the list"
    return None
