"""Service-account credentials in Voximplant's ``credentials.json`` format, made up locally."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_ACCOUNT_ID = 4_200_042
DEFAULT_ACCOUNT_EMAIL = "emulator@voxsms.invalid"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    """One account's key: what a client downloads, plus the public key the server verifies with."""

    account_id: int
    account_email: str
    key_id: str
    private_key: str  # PEM, PKCS8
    public_key: rsa.RSAPublicKey = field(repr=False, compare=False)

    @classmethod
    def generate(
        cls, account_id: int = DEFAULT_ACCOUNT_ID, account_email: str = DEFAULT_ACCOUNT_EMAIL
    ) -> Credentials:
        """Make a fresh RSA-2048 key pair with a random key id."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(account_id, account_email, str(uuid.uuid4()), pem, key.public_key())

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        """Parse a ``credentials.json`` text; the public key is derived once, here."""
        data = json.loads(text)
        key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("credentials.json must hold an RSA private key")
        return cls(
            int(data["account_id"]),
            data["account_email"],
            data["key_id"],
            data["private_key"],
            key.public_key(),
        )

    def to_json(self) -> str:
        """The ``credentials.json`` text, as Voximplant's console would hand it out."""
        return json.dumps(
            {
                "account_email": self.account_email,
                "account_id": self.account_id,
                "key_id": self.key_id,
                "private_key": self.private_key,
            }
        )


def load_or_create(state_dir: str | os.PathLike) -> Credentials:
    """Reuse ``state_dir/credentials.json`` or create it (mode 0600) on first use."""
    path = Path(state_dir) / CREDENTIALS_FILE
    if path.exists():
        return Credentials.from_json(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = Credentials.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(creds.to_json())
    return creds
