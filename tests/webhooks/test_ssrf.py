"""The SSRF guard: https only, every resolved address public, checked when used."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from api.config import Settings
from api.models.webhook import WebhookSubscription
from api.webhooks import delivery, ssrf
from api.webhooks.ssrf import UnsafeTarget, check_target, non_public_reason
from tests.factories import make_user
from tests.webhooks.conftest import (
    Receiver,
    deliveries,
    grant,
    make_org,
    run_worker,
    self_signed_certificate,
    subscribe,
)

PUBLIC = ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
NOT_PUBLIC = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "::1",
    "10.0.0.1",  # private
    "172.16.5.4",
    "192.168.0.10",
    "fc00::1",
    "fd12:3456::1",
    "169.254.169.254",  # link-local: cloud metadata
    "fe80::1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",  # unspecified
    "::",
    "224.0.0.1",  # multicast
    "ff02::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3:8443/hook",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "https://2130706433/hook",  # 127.0.0.1 written as one number
    ],
)
def test_urls_reaching_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False)


def test_https_is_required_unless_private_targets_are_allowed() -> None:
    with pytest.raises(UnsafeTarget, match="https"):
        check_target("http://93.184.215.14/hook", allow_private=False)
    with pytest.raises(UnsafeTarget, match="https"):
        check_target("ftp://93.184.215.14/hook", allow_private=True)
    assert check_target("http://127.0.0.1:9/hook", allow_private=True).addresses == [
        ipaddress.ip_address("127.0.0.1")
    ]


def test_a_public_ip_literal_passes_without_dns() -> None:
    target = check_target("https://93.184.215.14:8443/hook?x=1", allow_private=False)
    assert [str(a) for a in target.addresses] == ["93.184.215.14"]
    assert str(target.url_for(target.addresses[0])) == "https://93.184.215.14:8443/hook?x=1"


def test_one_private_address_among_public_ones_is_enough_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")]

    monkeypatch.setattr(ssrf, "resolve_addresses", resolve)
    with pytest.raises(UnsafeTarget, match=r"10\.0\.0\.7"):
        check_target("https://hooks.example.com/x", allow_private=False)


def test_the_connection_goes_to_the_checked_address_as_the_named_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        ssrf,
        "resolve_addresses",
        lambda _host, _port: [ipaddress.ip_address("2606:4700:4700::1111")],
    )
    target = check_target("https://user:pw@Hooks.Example.com:8443/in?a=b", allow_private=False)
    address = target.addresses[0]
    assert target.hostname == "hooks.example.com"
    assert target.host_header == "hooks.example.com:8443"
    assert str(target.url_for(address)) == "https://user:pw@[2606:4700:4700::1111]:8443/in?a=b"


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_target("https://no-such-host.invalid/hook", allow_private=False)


# Through the API and the worker


@pytest.fixture
def private_targets() -> bool:
    return False


REFUSED_URLS = [
    "http://93.184.215.14/hook",  # plain http
    "https://127.0.0.1/hook",
    "https://localhost:8443/hook",
    "https://[::1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook",
    "https://192.168.1.20/hook",
    "https://100.100.100.100/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.251/hook",
    "https://no-such-host.invalid/hook",
]


def test_registration_refuses_urls_that_are_not_public_https(
    client: TestClient, db: Session
) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    for url in REFUSED_URLS:
        response = client.post(
            f"/v1/orgs/{org_id}/webhooks",
            json={"url": url, "events": ["grant.created"]},
            headers=owner.headers,
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["loc"] == ["body", "url"]
    assert db.exec(select(WebhookSubscription)).all() == []

    hook = subscribe(client, owner, org_id, "https://93.184.215.14/hook", "grant.created")
    changed = client.patch(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}",
        json={"url": "https://169.254.169.254/"},
        headers=owner.headers,
    )
    assert changed.status_code == 422
    current = client.get(f"/v1/orgs/{org_id}/webhooks/{hook['id']}", headers=owner.headers)
    assert current.json()["url"] == "https://93.184.215.14/hook"


def test_a_name_that_turns_private_after_registration_is_not_called(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = {"hooks.example.test": [ipaddress.ip_address("93.184.215.14")]}
    monkeypatch.setattr(ssrf, "resolve_addresses", lambda host, _port: dns[host])
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(
        client, owner, org_id, f"https://hooks.example.test:{receiver.port}/hook", "grant.created"
    )
    dns["hooks.example.test"] = [ipaddress.ip_address("127.0.0.1")]  # DNS rebinding
    grant(client, user, org_id)

    run_worker(engine, settings)

    assert receiver.received == []
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "failed"
    error = delivery["attempts"][0]["error"]
    assert error.startswith("refused to send") and "127.0.0.1" in error and "loopback" in error


class TestPinnedTls:
    """The worker connects to the address it checked, yet speaks TLS to the URL's name."""

    @pytest.fixture
    def private_targets(self) -> bool:
        return True  # the receiver is on loopback

    def test_the_certificate_is_checked_against_the_name(
        self,
        client: TestClient,
        engine: Engine,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        cert, key = self_signed_certificate(tmp_path, "hooks.rebound.test")
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        monkeypatch.setattr(delivery, "TLS_VERIFY", ssl.create_default_context(cafile=cert))
        monkeypatch.setattr(
            ssrf,
            "resolve_addresses",
            lambda _host, _port: [ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")],
        )
        receiver = Receiver(tls=server_tls).start()  # on 127.0.0.1 only: ::1 is refused
        try:
            owner, user = make_user(client), make_user(client)
            org_id = make_org(client, owner)
            url = f"https://hooks.rebound.test:{receiver.port}/hook"
            hook = subscribe(client, owner, org_id, url, "grant.created")
            grant(client, user, org_id)
            run_worker(engine, settings)
        finally:
            receiver.stop()

        [webhook] = receiver.received
        assert webhook.headers["host"] == f"hooks.rebound.test:{receiver.port}"
        Webhook(hook["secret"]).verify(webhook.body, webhook.headers)
        [logged] = deliveries(client, owner, org_id, hook["id"])
        assert logged["status"] == "succeeded"
