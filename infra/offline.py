"""Run the Pulumi program offline, under Pulumi's mocks, and record what it declares.

No CLI, no credentials, no cloud: `make plan` and the tests both use this. Each resource is
recorded with its inputs (secrets kept apart), its parent and its options (protect,
retain_on_delete, delete_before_replace...), which the plain `Mocks.new_resource` hook does
not see; that is why the monitor itself is subclassed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.runtime
from google.protobuf import empty_pb2
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockEngine, MockMonitor, Mocks, MockSettings
from pulumi.runtime.settings import ROOT, SETTINGS, configure
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.config import PROJECT_NAME

SECRET_SIG = rpc._special_secret_sig
# What the mocks answer for a Cloud SQL instance's server CA (a placeholder, not a cert).
MOCK_CA_CERT = "-----BEGIN CERTIFICATE-----\nMOCK-CLOUD-SQL-SERVER-CA\n-----END CERTIFICATE-----\n"
SIG_KEY = rpc._special_sig_key


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Plain value with secrets unwrapped; the paths of secret values go into `secrets`."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            secrets.add(path)
            return _unwrap(value.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf carries every number as a double
    return value


@dataclass
class RecordedResource:
    """One registered resource: what the program asked for, as the engine would see it."""

    type: str
    name: str
    urn: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    secret_paths: set[str]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    dependencies: list[str]
    additional_secret_outputs: list[str]
    registered_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recording:
    """Everything one offline run declared, plus the stack outputs."""

    resources: list[RecordedResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> RecordedResource:
        found = self.of_type(type_)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_}, found {len(found)}")
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        return next(r for r in self.resources if r.urn == urn)


class FakeCloud(Mocks):
    """Plausible outputs for the attributes the program reads back from GCP."""

    def __init__(self, project: str, region: str) -> None:
        self.project = project
        self.region = region

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        state = dict(args.inputs)
        name = state.get("name") or f"{args.name}-0a1b2c3"
        state.setdefault("name", name)
        kind = args.typ.split(":")[-1]
        base = f"https://www.googleapis.com/compute/v1/projects/{self.project}"
        ident = f"projects/{self.project}/{kind.lower()}s/{name}"
        if args.typ == "gcp:compute/network:Network":
            ident = f"projects/{self.project}/global/networks/{name}"
            state["selfLink"] = f"{base}/global/networks/{name}"
        elif args.typ == "gcp:compute/subnetwork:Subnetwork":
            ident = f"projects/{self.project}/regions/{self.region}/subnetworks/{name}"
        elif args.typ == "gcp:compute/disk:Disk":
            ident = f"projects/{self.project}/zones/{state.get('zone')}/disks/{name}"
            state["selfLink"] = f"{base}/zones/{state.get('zone')}/disks/{name}"
        elif args.typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            state["selfLinkUnique"] = f"{base}/global/instanceTemplates/{name}?uniqueId=1234"
        elif args.typ == "gcp:compute/instance:Instance":
            nics = state.get("networkInterfaces") or [{}]
            nics[0] = {**nics[0], "networkIp": "10.42.0.2"}
            if nics[0].get("accessConfigs"):
                nics[0]["accessConfigs"] = [{**nics[0]["accessConfigs"][0], "natIp": "203.0.113.7"}]
            state["networkInterfaces"] = nics
        elif args.typ == "gcp:sql/databaseInstance:DatabaseInstance":
            state["connectionName"] = f"{self.project}:{self.region}:{name}"
            state["privateIpAddress"] = "10.99.0.3"
            state["serverCaCerts"] = [{"cert": MOCK_CA_CERT, "commonName": "C=US,O=Google"}]
        elif args.typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{state.get('accountId')}@{self.project}.iam.gserviceaccount.com"
        elif args.typ == "gcp:secretmanager/secret:Secret":
            ident = f"projects/{self.project}/secrets/{state.get('secretId')}"
        elif args.typ == "gcp:cloudrunv2/service:Service":
            state["uri"] = f"https://{name}-abcdefghij-ew.a.run.app"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "offline-mock-password-not-real"
        return ident, state


class RecordingMonitor(MockMonitor):
    """A mock monitor that also keeps each registration's options and registered outputs."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.output_secrets: dict[str, set[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secrets: set[str] = set()
        inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
        self.recorded.append(
            RecordedResource(
                type=request.type,
                name=request.name,
                urn=response.urn,
                custom=bool(request.custom),
                parent=request.parent,
                inputs=inputs,
                secret_paths=secrets,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                dependencies=list(request.dependencies),
                additional_secret_outputs=list(request.additionalSecretOutputs),
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        secrets: set[str] = set()
        self.outputs[request.urn] = _unwrap(
            rpc.deserialize_properties(request.outputs), "", secrets
        )
        self.output_secrets[request.urn] = secrets
        return empty_pb2.Empty()


def run_offline(
    program: Callable[[], Mapping[str, Any]],
    config: Mapping[str, object],
    secret_keys: Sequence[str] = (),
    stack: str = "dev",
) -> Recording:
    """Run `program` (which declares resources and returns its exports) under mocks."""
    project = str(config.get("gcp:project", "mock-project"))
    region = str(config.get("gcp:region", "europe-west1"))
    monitor = RecordingMonitor(FakeCloud(project, region))
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else _json(v) for k, v in config.items()}, list(secret_keys)
    )
    configure(
        MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(empty_pb2.Empty()).supportedFeatures),
            engine=MockEngine(logging.getLogger("pulumi-offline")),
            project=PROJECT_NAME,
            stack=stack,
            dry_run=False,
            organization="organization",
            callbacks=None,
        )
    )
    SETTINGS.outputs.clear()
    ROOT.set(None)

    def main() -> None:
        for key, value in program().items():
            pulumi.export(key, value)

    try:
        _sync_await(run_in_stack(main))
    finally:
        ROOT.set(None)
    stack_urn = f"urn:pulumi:{stack}::{PROJECT_NAME}::pulumi:pulumi:Stack::{PROJECT_NAME}-{stack}"
    for resource in monitor.recorded:
        resource.registered_outputs = monitor.outputs.get(resource.urn, {})
    return Recording(
        resources=monitor.recorded,
        outputs=monitor.outputs.get(stack_urn, {}),
        secret_outputs=monitor.output_secrets.get(stack_urn, set()),
    )


def _json(value: object) -> str:
    import json

    return json.dumps(value)
