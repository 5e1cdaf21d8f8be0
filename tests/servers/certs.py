"""Throwaway TLS material and CDP API keys for the local venue test servers.

Nothing here is a secret: every key is generated fresh (or reused from a test's own temp dir) and is
only ever trusted by the test process that made it.

* ``generate_cert(directory=None) -> (cert_path, key_path)`` -- a self-signed EC P-256 server
  certificate for ``127.0.0.1`` / ``localhost`` / ``::1``.  The cert file is its own trust bundle:
  ``session.verify = cert_path`` (or ``REQUESTS_CA_BUNDLE=cert_path``).
* ``ensure_cert(directory) -> (cert_path, key_path)`` -- reuse ``cert.pem``/``key.pem`` in
  ``directory`` when both exist (a restarted standalone server keeps the cert its clients trust),
  otherwise generate them there.
* ``generate_cdp_key(name=DEFAULT_KEY_NAME) -> CdpKey`` -- an EC P-256 key in the format of a
  Coinbase Developer Platform (CDP) API key: ``name`` + SEC1 PEM private key (-> ES256 JWTs).
* ``write_key_file(path, key) -> path`` / ``load_key_file(path) -> CdpKey`` -- the CDP ``key_file``
  JSON that ``RESTClient(key_file=...)`` reads: ``{"name": ..., "privateKey": ...}``.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import os
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_KEY_NAME = "organizations/test-org/apiKeys/test-key"

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate_cert(directory: str | None = None, *, days: int = 30) -> tuple[str, str]:
    """Write a fresh self-signed cert + key for 127.0.0.1/localhost; return (cert_path, key_path)."""
    directory = directory or tempfile.mkdtemp(prefix="parity-tls-")
    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Parity local test server"),
    ])
    now = _dt.datetime.now(_dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]),
            critical=False,
        )
        # A self-signed trust anchor that is also the leaf: CA:TRUE keeps strict verifiers
        # (Python 3.13 VERIFY_X509_STRICT, OpenSSL 3) happy when the file is used as the CA bundle.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, CERT_FILE)
    key_path = os.path.join(directory, KEY_FILE)
    _write_private(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ensure_cert(directory: str) -> tuple[str, str]:
    """Reuse ``directory/cert.pem`` + ``key.pem`` if both exist, else generate them there."""
    cert_path = os.path.join(directory, CERT_FILE)
    key_path = os.path.join(directory, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    return generate_cert(directory)


@dataclass(frozen=True)
class CdpKey:
    """A throwaway CDP API key: ``name`` (the JWT kid/sub), private and public PEM."""

    name: str
    private_pem: str
    public_pem: str

    def rest_client_kwargs(self) -> dict:
        return {"api_key": self.name, "api_secret": self.private_pem}


def public_pem_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def generate_cdp_key(name: str = DEFAULT_KEY_NAME, *, ed25519_key: bool = False) -> CdpKey:
    """A fresh EC P-256 key (SEC1 PEM, as CDP issues them) or, if asked, an Ed25519 PKCS8 key."""
    if ed25519_key:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return CdpKey(name=name, private_pem=pem, public_pem=public_pem_of(pem))


def write_key_file(path: str, key: CdpKey | tuple[str, str]) -> str:
    """Write the CDP key_file JSON ``{"name", "privateKey"}`` (mode 0600); return ``path``."""
    name, pem = (key.name, key.private_pem) if isinstance(key, CdpKey) else key
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    _write_private(path, json.dumps({"name": name, "privateKey": pem}, indent=2).encode())
    return path


def load_key_file(path: str) -> CdpKey:
    """Read a CDP key_file JSON (``name`` or ``id``) and derive the public key."""
    with open(path) as f:
        data = json.load(f)
    name = data.get("name") or data.get("id")
    pem = data["privateKey"]
    if "\\n" in pem and "\n" not in pem:
        pem = pem.replace("\\n", "\n")
    return CdpKey(name=name, private_pem=pem, public_pem=public_pem_of(pem))
