"""The DynamoDB tables a project declares, created at start in a local DynamoDB.

``AWS::DynamoDB::Table`` (``TableName``, ``KeySchema``, ``AttributeDefinitions``, ``BillingMode``,
``ProvisionedThroughput``, ``GlobalSecondaryIndexes``, ``LocalSecondaryIndexes``,
``StreamSpecification``, ``TimeToLiveSpecification``) and SAM's ``AWS::Serverless::SimpleTable``
(``PrimaryKey``, ``TableName``, ``ProvisionedThroughput``) become ``create_table`` calls.

``LocalDynamoDB`` is where they are created: by default moto's server, started by sockway on a
free port of 127.0.0.1 in a process of its own (``pip install 'sockway[local]'``), in memory,
so every start begins with empty tables; or an endpoint the user names (``--dynamodb-endpoint``,
e.g. DynamoDB Local), where existing tables are kept. Every handler then gets
``AWS_ENDPOINT_URL_DYNAMODB`` and test credentials (``handler_environment``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from sockway.projects.problems import Findings
from sockway.projects.resources import Resource, by_type

TABLE = "AWS::DynamoDB::Table"
SIMPLE_TABLE = "AWS::Serverless::SimpleTable"
TYPES = (TABLE, SIMPLE_TABLE)
TEST_CREDENTIAL = "testing"

log = logging.getLogger("sockway.projects")

_TABLE_READ = {
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "TimeToLiveSpecification",
}
_TABLE_NOT_EMULATED = {
    "SSESpecification",
    "PointInTimeRecoverySpecification",
    "Tags",
    "ContributorInsightsSpecification",
    "DeletionProtectionEnabled",
    "TableClass",
    "KinesisStreamSpecification",
    "ResourcePolicy",
    "OnDemandThroughput",
    "WarmThroughput",
}
_SIMPLE_READ = {"TableName", "PrimaryKey", "ProvisionedThroughput"}
_SIMPLE_NOT_EMULATED = {"SSESpecification", "Tags", "PointInTimeRecoverySpecification"}
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
_SCALAR = {"String": "S", "Number": "N", "Binary": "B"}


@dataclass
class TableDef:
    logical_id: str
    name: str
    create: dict[str, Any]  # create_table keyword arguments
    ttl_attribute: str | None = None


def tables(
    resources: dict[str, Resource], refs: dict[str, Any], findings: Findings
) -> list[TableDef]:
    """The tables of a template; problems and not-emulated properties go to ``findings``."""
    out: list[TableDef] = []
    for resource in by_type(resources, *TYPES):
        simple = resource.type == SIMPLE_TABLE
        read, skip = (
            (_SIMPLE_READ, _SIMPLE_NOT_EMULATED) if simple else (_TABLE_READ, _TABLE_NOT_EMULATED)
        )
        props = resource.properties
        ignored = sorted(k for k in props if k in skip)
        if ignored:
            findings.ignore(
                f"{resource.logical_id} ({resource.type}): {', '.join(ignored)} not emulated"
            )
        for key in props:
            if key not in read and key not in skip:
                findings.problem(resource.where(key), f"not supported by sockway ({resource.type})")
        name = str(refs[resource.logical_id])
        create = (
            _simple_table(resource, name, findings) if simple else _table(resource, name, findings)
        )
        if create is None:
            continue
        ttl = props.get("TimeToLiveSpecification")
        attribute = None
        if isinstance(ttl, dict) and ttl.get("Enabled") in (True, "true"):
            attribute = str(ttl.get("AttributeName"))
        out.append(TableDef(resource.logical_id, name, create, attribute))
    return out


def _throughput(value: Any) -> dict[str, int]:
    value = value if isinstance(value, dict) else {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _table(resource: Resource, name: str, findings: Findings) -> dict[str, Any] | None:
    props = resource.properties
    for key in ("KeySchema", "AttributeDefinitions"):
        if not isinstance(props.get(key), list):
            findings.problem(resource.where(key), "required (a list)")
            return None
    billing = props.get("BillingMode", "PROVISIONED")
    create: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        create["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = props.get(key)
        if not indexes:
            continue
        shaped = []
        for index in indexes:
            item = {k: index[k] for k in _INDEX_KEYS if k in index}
            if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                item["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
            else:
                item.pop("ProvisionedThroughput", None)
            shaped.append(item)
        create[key] = shaped
    stream = props.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamViewType"):
        create["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
        findings.ignore(
            f"{resource.logical_id} ({TABLE}): the stream is created; nothing consumes it"
        )
    return create


def _simple_table(resource: Resource, name: str, findings: Findings) -> dict[str, Any] | None:
    key = resource.properties.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    kind = _SCALAR.get(str(key.get("Type", "String")))
    if kind is None or not isinstance(key.get("Name"), str):
        findings.problem(resource.where("PrimaryKey"), "needs Name and Type String|Number|Binary")
        return None
    create: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
    }
    if resource.properties.get("ProvisionedThroughput"):
        create["BillingMode"] = "PROVISIONED"
        create["ProvisionedThroughput"] = _throughput(resource.properties["ProvisionedThroughput"])
    else:
        create["BillingMode"] = "PAY_PER_REQUEST"
    return create


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalDynamoDB:
    """The DynamoDB the handlers use: an embedded moto server, or ``endpoint`` given."""

    endpoint: str | None = None
    region: str = "us-east-1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self._process is not None

    def start(self, timeout_s: float = 30) -> str:
        """Start moto's server unless an endpoint was given; return the endpoint URL."""
        if self.endpoint is not None:
            return self.endpoint
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the template declares DynamoDB tables: install the local extra "
                "(pip install 'sockway[local]') or give --dynamodb-endpoint URL"
            ) from None
        port = free_port()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the embedded DynamoDB (moto) did not start") from None
                time.sleep(0.05)
        return self.endpoint

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=TEST_CREDENTIAL,
            aws_secret_access_key=TEST_CREDENTIAL,
        )

    def create_tables(self, defs: list[TableDef]) -> list[str]:
        """Create every table (an existing one is kept); one line per table for the banner."""
        client = self.client()
        existing = set(client.list_tables().get("TableNames", []))
        lines = []
        for table in defs:
            if table.name in existing:
                lines.append(f"table {table.name} ({table.logical_id}): kept, it exists")
                continue
            client.create_table(**table.create)
            client.get_waiter("table_exists").wait(TableName=table.name)
            if table.ttl_attribute:
                client.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
            lines.append(f"table {table.name} ({table.logical_id}): created")
        return lines

    def handler_environment(self) -> dict[str, str]:
        """What every handler gets so ``boto3.resource('dynamodb')`` reaches this DynamoDB."""
        assert self.endpoint is not None
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIAL,
        }

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._process = None
