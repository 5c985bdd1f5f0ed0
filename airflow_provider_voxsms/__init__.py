"""Apache Airflow provider for Voximplant A2P SMS."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe this provider to Airflow's ProvidersManager (entry point `apache_airflow_provider`)."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

    return {
        "package-name": "airflow-provider-voxsms",
        "name": "Voximplant SMS",
        "description": "Send A2P SMS through Voximplant's Management API.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": VoximplantHook.conn_type,
                "hook-class-name": "airflow_provider_voxsms.hooks.voximplant.VoximplantHook",
                "conn-fields": VoximplantHook.conn_fields(),
                "ui-field-behaviour": VoximplantHook.get_ui_field_behaviour(),
            }
        ],
        "hooks": [
            {
                "integration-name": "Voximplant",
                "python-modules": ["airflow_provider_voxsms.hooks.voximplant"],
            }
        ],
    }
