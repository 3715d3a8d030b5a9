"""Throwaway Google service accounts for tests: a fresh RSA key, the key file's JSON, and the
sim's token endpoint accepting (or not) its public key."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_PATH = "/_sim/vertex/token"


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    private_key: str  # PEM
    public_key: str  # PEM
    token_uri: str

    @property
    def info(self) -> dict[str, Any]:
        """The key file's content, as `gcloud iam service-accounts keys create` writes it."""
        return {
            "type": "service_account",
            "project_id": "nemo-test",
            "private_key_id": secrets.token_hex(20),
            "private_key": self.private_key,
            "client_email": self.email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def key_file(self) -> str:
        return json.dumps(self.info, indent=2) + "\n"


def new_account(sim_url: str, name: str = "gateway") -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    email = f"{name}-{secrets.token_hex(4)}@nemo-test.iam.gserviceaccount.com"
    return ServiceAccount(email, private, public, sim_url + TOKEN_PATH)


def accept(sim_url: str, account: ServiceAccount, lifetime: int = 3600, status: int | None = None) -> None:
    """Have the sim's token endpoint accept `account` (tokens living `lifetime` seconds; or
    answering `status` instead, e.g. 503: the endpoint is down)."""
    body: dict[str, Any] = {
        "client_email": account.email,
        "public_key": account.public_key,
        "token_lifetime": lifetime,
    }
    if status is not None:
        body["token_status"] = status
    httpx.post(f"{sim_url}/_sim/vertex/service-accounts", json=body, timeout=10).raise_for_status()


def issued_tokens(sim_url: str) -> list[str]:
    found: list[str] = httpx.get(f"{sim_url}/_sim/vertex/tokens", timeout=10).json()
    return found
