"""TLS and mTLS between `flowlens tail` and the replay relay, with certificates made here: what
works works, and every mismatch ends with one clear line, quickly, never a hang."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flowlens.cli import main
from flowlens.relay_server import ReplayData, ReplayRelay, ServerTLS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "lab.jsonpb"
SERVER_NAME = "relay.flowlens.test"


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          names: tuple[str, ...] = (), days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0]))
               .not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None
           ) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    _write(d / "ca.pem", _cert("flowlens test CA", ca_key, "flowlens test CA", ca_key, ca=True))
    _write(d / "other-ca.pem", _cert("someone else", other_key, "someone else", other_key,
                                     ca=True))
    server_key, client_key, old_key = _key(), _key(), _key()
    _write(d / "server.pem", _cert("relay", server_key, "flowlens test CA", ca_key,
                                   names=(SERVER_NAME, "localhost")), server_key)
    _write(d / "client.pem", _cert("client", client_key, "flowlens test CA", ca_key),
           client_key)
    _write(d / "expired.pem", _cert("relay", old_key, "flowlens test CA", ca_key,
                                    names=(SERVER_NAME,), days=(-30, -1)), old_key)
    return Pki(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key",
               d / "client.pem", d / "client.key", d / "expired.pem", d / "expired.key")


@pytest.fixture(scope="module")
def data() -> ReplayData:
    return ReplayData.from_sources(SAMPLE)


def _serve(data: ReplayData, tls: ServerTLS | None) -> ReplayRelay:
    return ReplayRelay(data, listen="127.0.0.1:0", tls=tls).start()


@pytest.fixture(scope="module")
def tls_relay(data: ReplayData, pki: Pki) -> Iterator[str]:
    relay = _serve(data, ServerTLS(str(pki.server_cert), str(pki.server_key)))
    yield f"127.0.0.1:{relay.port}"
    relay.stop()


@pytest.fixture(scope="module")
def mtls_relay(data: ReplayData, pki: Pki) -> Iterator[str]:
    relay = _serve(data, ServerTLS(str(pki.server_cert), str(pki.server_key), str(pki.ca)))
    yield f"127.0.0.1:{relay.port}"
    relay.stop()


def _tail(*args: str) -> tuple[Result, float]:
    start = time.monotonic()
    result = CliRunner().invoke(main, ["tail", "--last", "2", "--timeout", "3s", *args])
    return result, time.monotonic() - start


def _ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 6  # last 2 of each of the 3 nodes


def _fails_clearly(result: Result, elapsed: float, server: str, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert server in lines[0]
    for word in words:
        assert word in lines[0]
    assert elapsed < 3.5  # within --timeout, never a hang


def test_tls_with_the_right_ca(tls_relay: str, pki: Pki) -> None:
    result, _ = _tail("--server", tls_relay, "--tls", "--tls-ca-cert-files", str(pki.ca),
                      "--tls-server-name", SERVER_NAME)
    _ok(result)


def test_tls_prefix_turns_tls_on(tls_relay: str, pki: Pki) -> None:
    result, _ = _tail("--server", f"tls://{tls_relay}", "--tls-ca-cert-files", str(pki.ca),
                      "--tls-server-name", SERVER_NAME)
    _ok(result)


def test_tls_allow_insecure_skips_verification(tls_relay: str) -> None:
    result, _ = _tail("--server", tls_relay, "--tls-allow-insecure")
    _ok(result)


def test_wrong_ca_fails_clearly(tls_relay: str, pki: Pki) -> None:
    result, elapsed = _tail("--server", tls_relay, "--tls", "--tls-ca-cert-files",
                            str(pki.other_ca), "--tls-server-name", SERVER_NAME)
    _fails_clearly(result, elapsed, tls_relay, "UNAVAILABLE", "TLS")


def test_mismatched_server_name_fails_clearly(tls_relay: str, pki: Pki) -> None:
    result, elapsed = _tail("--server", tls_relay, "--tls", "--tls-ca-cert-files", str(pki.ca),
                            "--tls-server-name", "someone-else.example")
    _fails_clearly(result, elapsed, tls_relay, "TLS")


def test_expired_certificate_fails_clearly(data: ReplayData, pki: Pki) -> None:
    relay = _serve(data, ServerTLS(str(pki.expired_cert), str(pki.expired_key)))
    try:
        server = f"127.0.0.1:{relay.port}"
        result, elapsed = _tail("--server", server, "--tls", "--tls-ca-cert-files", str(pki.ca),
                                "--tls-server-name", SERVER_NAME)
    finally:
        relay.stop()
    _fails_clearly(result, elapsed, server, "TLS")


def test_plaintext_client_against_tls_relay(tls_relay: str) -> None:
    result, elapsed = _tail("--server", tls_relay)
    _fails_clearly(result, elapsed, tls_relay, "UNAVAILABLE")


def test_tls_client_against_plaintext_relay(data: ReplayData, pki: Pki) -> None:
    relay = _serve(data, None)
    try:
        server = f"127.0.0.1:{relay.port}"
        result, elapsed = _tail("--server", server, "--tls", "--tls-ca-cert-files", str(pki.ca))
    finally:
        relay.stop()
    _fails_clearly(result, elapsed, server, "UNAVAILABLE", "TLS")


def test_mtls_with_a_client_certificate(mtls_relay: str, pki: Pki) -> None:
    result, _ = _tail("--server", mtls_relay, "--tls-ca-cert-files", str(pki.ca),
                      "--tls-server-name", SERVER_NAME, "--tls-client-cert-file",
                      str(pki.client_cert), "--tls-client-key-file", str(pki.client_key))
    _ok(result)


def test_mtls_without_a_client_certificate_fails_clearly(mtls_relay: str, pki: Pki) -> None:
    result, elapsed = _tail("--server", mtls_relay, "--tls-ca-cert-files", str(pki.ca),
                            "--tls-server-name", SERVER_NAME)
    _fails_clearly(result, elapsed, mtls_relay, "UNAVAILABLE")


def test_status_over_mtls(mtls_relay: str, pki: Pki) -> None:
    result = CliRunner().invoke(main, [
        "status", "--server", mtls_relay, "--tls-ca-cert-files", str(pki.ca),
        "--tls-server-name", SERVER_NAME, "--tls-client-cert-file", str(pki.client_cert),
        "--tls-client-key-file", str(pki.client_key)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Healthcheck (via {mtls_relay}): Ok\n"
                                    "Current/Max Flows: 3,230/3,230")


def test_missing_certificate_file_is_a_usage_error(tls_relay: str, tmp_path: Path) -> None:
    result, _ = _tail("--server", tls_relay, "--tls-ca-cert-files", str(tmp_path / "nope.pem"))
    assert result.exit_code == 2
    assert "nope.pem" in result.stderr


def test_a_ca_file_that_is_no_certificate_is_one_line(tls_relay: str, pki: Pki) -> None:
    """The key given where the CA goes: one line naming the flag and the file, before
    connecting (grpc would log four lines of its own on stderr, then fail each connection)."""
    done = subprocess.run(
        [sys.executable, "-m", "flowlens", "tail", "--server", tls_relay, "--last", "1",
         "--tls-ca-cert-files", f"{pki.ca},{pki.client_key}"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"flowlens: error: --tls-ca-cert-files {pki.client_key}: not a PEM "
                           "CA certificate (no certificate or crl found)\n")


@pytest.mark.parametrize("swap", [False, True])
def test_a_client_key_that_is_not_the_certificates_is_one_line(mtls_relay: str, pki: Pki,
                                                               swap: bool) -> None:
    cert, key = (pki.client_key, pki.client_cert) if swap else (pki.client_cert, pki.server_key)
    result, _ = _tail("--server", mtls_relay, "--tls-ca-cert-files", str(pki.ca),
                      "--tls-server-name", SERVER_NAME, "--tls-client-cert-file", str(cert),
                      "--tls-client-key-file", str(key))
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"flowlens: error: --tls-client-cert-file {cert} and --tls-client-key-file {key}: not a "
        "PEM certificate and its unencrypted key")
    assert result.stderr.count("\n") == 1
