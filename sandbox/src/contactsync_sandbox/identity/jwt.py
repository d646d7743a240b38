"""RS256-signed JWTs (the `id_token`) and the JSON Web Key Set that verifies them.

MSAL does not validate id tokens (it decodes the claims to build the account), but anything
that does can: the signing key's public half is served at `jwks_uri`. The key is generated once
per process (2048-bit RSA; `cryptography` comes with `trustme`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    """Base64url without padding (JOSE, RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(_int_bytes(numbers.n)),
            "e": b64url(_int_bytes(numbers.e)),
        }

    def encode(self, claims: dict[str, Any]) -> str:
        """A compact JWS: base64url(header).base64url(claims).base64url(RS256 signature)."""
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode("ascii")
        signature = self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"


@cache
def signing_key() -> SigningKey:
    """The process-wide id-token signing key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    modulus = _int_bytes(key.public_key().public_numbers().n)
    return SigningKey(key, b64url(hashlib.sha256(modulus).digest()[:16]))


def decode_unverified(token: str) -> dict[str, Any]:
    """The claims of a compact JWS, without checking the signature (tests, tooling)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
