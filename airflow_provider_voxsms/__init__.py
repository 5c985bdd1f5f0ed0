"""Apache Airflow provider for Voximplant A2P SMS."""

from __future__ import annotations

__version__ = "0.1.0"

# The Voximplant connection form. Airflow >= 3.2 reads it from provider info without importing
# the hook; VoximplantHook.get_ui_field_behaviour() returns the same layout.
# What Airflow 3.3's form does with these (checked in a browser by tests/ui/): extra fields get
# no placeholder (only standard fields do), so the descriptions carry the examples; a type
# without "null" makes the field required and keeps Save disabled while it is empty; and every
# field is saved, the empty ones as null, which the hook reads as unset.
CONN_FIELDS: dict[str, dict] = {
    "credentials_path": {
        "label": "Credentials file path",
        "description": "Path to credentials.json on the workers, e.g. "
        "/opt/airflow/secrets/voximplant.json; used when credentials.json content is empty.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Read timeout (seconds)",
        "description": "How long to wait for an API answer before its outcome counts as "
        "unknown; 60 by default.",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Certificates to trust instead of the system's (a private CA, the "
        "emulator's), e.g. /opt/airflow/certs/ca.pem.",
        "schema": {"type": ["string", "null"]},
    },
    "account_id": {
        "label": "Child account id",
        "description": "Act for a child account, e.g. 1234567: its id goes into the token's iss "
        "claim. Empty: the service account's own.",
        "schema": {"type": ["integer", "null"]},
    },
}
UI_FIELD_BEHAVIOUR: dict = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"host": "API base URL", "password": "credentials.json content"},
    "placeholders": {
        "host": "https://api.voximplant.com/platform_api",
        "password": '{"account_email": "...", "account_id": 123, "key_id": "...", '
        '"private_key": "-----BEGIN PRIVATE KEY-----..."}',
    },
}


def get_provider_info() -> dict:
    """Describe this provider to Airflow (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-voxsms",
        "name": "Voximplant SMS",
        "description": "Send A2P SMS through Voximplant's Management API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Voximplant",
                "external-doc-url": "https://voximplant.com/docs",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Voximplant",
                "python-modules": ["airflow_provider_voxsms.hooks.voximplant"],
            }
        ],
        "operators": [
            {
                "integration-name": "Voximplant",
                "python-modules": [
                    "airflow_provider_voxsms.operators.a2p_sms",
                    "airflow_provider_voxsms.operators.delivery_report",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Voximplant",
                "python-modules": ["airflow_provider_voxsms.triggers.delivery"],
            }
        ],
        "notifications": ["airflow_provider_voxsms.notifications.voximplant.VoximplantSmsNotifier"],
        "connection-types": [
            {
                "connection-type": "voximplant",
                "hook-class-name": "airflow_provider_voxsms.hooks.voximplant.VoximplantHook",
                "hook-name": "Voximplant",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
