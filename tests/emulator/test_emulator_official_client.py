"""The vendor's own Python client (voximplant-apiclient) talks to the emulator over HTTPS."""

from __future__ import annotations

import pytest

apiclient = pytest.importorskip("voximplant.apiclient.client")

SENDER = "447443332211"


@pytest.fixture
def client(voximplant_emulator_tls, tmp_path, monkeypatch):
    creds = tmp_path / "credentials.json"
    creds.write_text(voximplant_emulator_tls.credentials_json)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(voximplant_emulator_tls.cert_path))
    return apiclient.VoximplantAPI(str(creds), endpoint=voximplant_emulator_tls.endpoint)


def test_official_client_sends_and_reads_history(client, voximplant_emulator_tls):
    res = client.a2p_send_sms(SENDER, ["447443332212", "447443332213", "12"], "Test message", True)
    assert [r["destination_number"] for r in res["result"]] == ["447443332212", "447443332213"]
    assert res["failed"][0]["error_code"] == 506 and res["fragments_count"] == 1
    ids = [r["message_id"] for r in res["result"]]
    assert [m.text for m in voximplant_emulator_tls.state.messages] == ["Test message"] * 2
    assert voximplant_emulator_tls.state.messages[0].store_body is True  # sent as "True"

    # The client's history parser reads processing_date as a date only, but the API documents
    # "yyyy-MM-dd HH:mm:ss", which the emulator sends: client 2.12.0 fails to parse it.
    with pytest.raises(ValueError, match="unconverted data remains"):
        client.a2p_get_sms_history(message_id=ids)
    raw = client._perform_request("A2PGetSmsHistory", {"message_id": ";".join(map(str, ids))})
    assert [r["message_id"] for r in raw["result"]] == ids
    assert raw["result"][0]["text"] == "Test message"


def test_official_client_account_info_and_errors(client, voximplant_emulator_tls):
    info = client.get_account_info()
    assert info["result"]["account_id"] == voximplant_emulator_tls.state.credentials.account_id
    assert info["result"]["created"].year == 2024  # parsed by the client as a UTC datetime
    with pytest.raises(apiclient.VoximplantException) as exc:
        client.a2p_send_sms("NotMine", ["447443332212"], "x")
    assert exc.value.code == 507
    voximplant_emulator_tls.state.set_faults(http_503_rate=1.0)
    with pytest.raises(apiclient.VoximplantException) as exc:
        client.get_account_info()
    assert exc.value.code == 503
