"""The VM's startup script and the role variables it hands to the Ansible roles.

The startup script (templates/gce-startup.sh.j2) provisions every VM the instance group
creates by running ansible/site.yml from the bundle, with the variables below; the
`ansibleInventory` output gives an operator's run the very same variables (role_vars), so
both paths configure a VM identically (docs/contracts.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

# Paths on the VM: docs/contracts.md.
DISK_DEVICE_NAME = "super-spine-disk"
DISK_DEVICE = f"/dev/disk/by-id/google-{DISK_DEVICE_NAME}"
MOUNT_POINT = "/data/super-spine"
STOP_BUDGET = "25s"
# The port spine-health.socket listens on while the agent serves (role spine_agent).
HEALTH_PORT = 8021
# GCE's metadata server, by address: it needs no DNS.
METADATA_URL = "http://169.254.169.254/computeMetadata/v1"
# Metadata keys the startup script reads.
BUNDLE_URL_KEY = "super-spine-bundle-url"
BUNDLE_SHA_KEY = "super-spine-bundle-sha256"
VARS_KEY = "super-spine-vars"
SECRETS_KEY = "super-spine-protected-vars"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible's template module does, so both render alike
        autoescape=False,  # shell and YAML, not HTML
    )


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Render one template; an unknown variable is an error, not an empty string."""
    return _environment().get_template(template).render(**variables)


def startup_script(metadata_url: str = METADATA_URL) -> str:
    """The boot-time script; the lab renders it with its stand-in metadata server's URL."""
    return render("gce-startup.sh.j2", {"spine_metadata_url": metadata_url})


# The hybrid VM's agent: over private IP with the server's CA verified, logging in as the VM's
# service account (IAM database authentication), shipping asynchronously from its disk.
POSTGRES_PORT = 5432
POSTGRES_SSLMODE = "verify-ca"
POSTGRES_AUTH = "iam"
POSTGRES_WRITE = "async"


def postgres_vars(
    *, host: str, database: str, user: str, ca_cert: str, connection_name: str
) -> dict[str, Any]:
    """The spine_postgres_* role variables: where and as whom, never a password (there is
    none: the agent's token comes from the metadata server). The CA is public."""
    return {
        "spine_postgres_host": host,
        "spine_postgres_port": POSTGRES_PORT,
        "spine_postgres_database": database,
        "spine_postgres_user": user,
        "spine_postgres_auth": POSTGRES_AUTH,
        "spine_postgres_sslmode": POSTGRES_SSLMODE,
        "spine_postgres_ca_cert": ca_cert,
        "spine_postgres_write": POSTGRES_WRITE,
        "spine_postgres_connection_name": connection_name,
    }


def role_vars(
    git_remote: str | None, postgres: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The roles' variables for a GCE VM (no secrets: those travel separately)."""
    return {
        "spine_disk_device": DISK_DEVICE,
        "spine_mount_point": MOUNT_POINT,
        "spine_storage_path": MOUNT_POINT,
        "spine_stop_budget": STOP_BUDGET,
        "spine_health_port": HEALTH_PORT,
        "spine_git_remote": git_remote or "",
        **(postgres or {}),
    }


def vm_metadata(
    *,
    startup: str,
    bundle_url: str,
    bundle_sha256: str,
    variables: Mapping[str, Any],
    secret_urls: Mapping[str, str],
) -> dict[str, str]:
    """The metadata items the startup script reads (values only: never a secret itself)."""
    return {
        "startup-script": startup,
        BUNDLE_URL_KEY: bundle_url,
        BUNDLE_SHA_KEY: bundle_sha256,
        VARS_KEY: json.dumps(dict(variables), sort_keys=True),
        SECRETS_KEY: json.dumps(dict(secret_urls), sort_keys=True),
    }
