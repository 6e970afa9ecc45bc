"""One ComponentResource per concern; topologies.py composes them."""

from infra.components.agent_secrets import AgentSecrets, AgentSecretsArgs
from infra.components.apis import ProjectApis, ProjectApisArgs
from infra.components.bundle_store import BundleStore, BundleStoreArgs
from infra.components.database import Database, DatabaseArgs
from infra.components.identity import ServiceIdentity, ServiceIdentityArgs
from infra.components.network import Network, NetworkArgs
from infra.components.service import CloudRunService, CloudRunServiceArgs
from infra.components.vm import SpineVm, SpineVmArgs

__all__ = [
    "AgentSecrets",
    "AgentSecretsArgs",
    "BundleStore",
    "BundleStoreArgs",
    "CloudRunService",
    "CloudRunServiceArgs",
    "Database",
    "DatabaseArgs",
    "Network",
    "NetworkArgs",
    "ProjectApis",
    "ProjectApisArgs",
    "ServiceIdentity",
    "ServiceIdentityArgs",
    "SpineVm",
    "SpineVmArgs",
]
