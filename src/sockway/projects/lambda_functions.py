"""``AWS::Serverless::Function`` / ``AWS::Lambda::Function`` → a sockway function (apigw spec
§10.3; SAM's "AWS::Serverless::Function" and CloudFormation's "AWS::Lambda::Function").

Read: ``Handler``, ``Runtime``, ``CodeUri`` (SAM, a local directory) / ``Code`` (a local
directory, inline ``ZipFile``, or S3 with CDK's ``aws:asset:path`` metadata) / ``InlineCode``,
``Environment.Variables``, ``Timeout`` (Lambda's default 3 s), ``MemorySize`` (128),
``ReservedConcurrentExecutions``, ``Layers`` (layer resources of the template with local content;
their ``python/`` directories go on the function's path as ``/opt/python`` does on Lambda),
``FunctionName``; SAM ``Globals.Function`` fills what a function leaves out. Python functions
run with ``runtime: process`` (each its own environment, as Lambda); other runtimes are refused
with the function's logical id.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockway.projects.intrinsics import scalar_string
from sockway.projects.problems import Findings

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
FUNCTION_TYPES = (SERVERLESS_FUNCTION, LAMBDA_FUNCTION)
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")

_READ = {
    "Handler",
    "Runtime",
    "CodeUri",
    "Code",
    "InlineCode",
    "Environment",
    "Timeout",
    "MemorySize",
    "ReservedConcurrentExecutions",
    "Layers",
    "FunctionName",
    "PackageType",
}
# Properties with no local effect on what the handler computes: listed as not emulated.
_NOT_EMULATED = {
    "Role",
    "Policies",
    "Description",
    "Tags",
    "Tracing",
    "TracingConfig",
    "Architectures",
    "VpcConfig",
    "AutoPublishAlias",
    "AutoPublishCodeSha256",
    "AutoPublishAliasAllProperties",
    "DeploymentPreference",
    "PermissionsBoundary",
    "KmsKeyArn",
    "LoggingConfig",
    "DeadLetterQueue",
    "DeadLetterConfig",
    "EphemeralStorage",
    "RuntimeManagementConfig",
    "SnapStart",
    "ProvisionedConcurrencyConfig",
    "Events",
    "EventInvokeConfig",
    "FunctionUrlConfig",
    "CodeSigningConfigArn",
    "AssumeRolePolicyDocument",
    "RolePath",
    "VersionDescription",
    "PropagateTags",
    "RecursiveLoop",
}
# Accepted without a word: descriptive, or (Role) named by an IAM resource listed already.
_DESCRIPTIVE = {"Description", "Tags", "VersionDescription", "PropagateTags", "Role"}
_POWERTOOLS_LAYER = re.compile(
    r"^arn:aws[\w-]*:lambda:[\w-]+:\d{12}:layer:AWSLambdaPowertoolsPython"
)


@dataclass
class FunctionDef:
    """One template function, ready to become a sockway handler."""

    logical_id: str
    name: str
    handler: str  # module.function (Python) or dir/file.export (Node.js)
    code_dir: Path
    runtime: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int | None = None
    layer_paths: list[Path] = field(default_factory=list)

    def settings(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The sockway handler keys of this function (``timeout_s`` caps the function's)."""
        environment = dict(self.environment)
        node = self.runtime.startswith("nodejs")
        if self.layer_paths and node:
            # A Node.js layer's packages are under nodejs/node_modules (/opt/nodejs on Lambda).
            paths = [str(p / "nodejs" / "node_modules") for p in self.layer_paths]
            environment["NODE_PATH"] = ":".join(
                paths + ([environment["NODE_PATH"]] if "NODE_PATH" in environment else [])
            )
        elif self.layer_paths:
            paths = [str(p) for p in self.layer_paths]
            environment["PYTHONPATH"] = ":".join(
                paths + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else [])
            )
        out: dict[str, Any] = {
            "handler": self.handler,
            "function_name": self.name,
            "runtime": "nodejs" if node else "process",
            "code_dir": str(self.code_dir),
            "memory_mb": max(128, min(self.memory_mb, 10240)),
            "timeout_s": min(self.timeout_s, timeout_s) if timeout_s else self.timeout_s,
        }
        if environment:
            out["environment"] = environment
        if self.reserved_concurrency is not None:
            out["reserved_concurrency"] = self.reserved_concurrency
        return out


def default_function_name(stack_name: str, logical_id: str) -> str:
    """A generated name like CloudFormation's ``{stack}-{logicalId}-{suffix}`` (stable)."""
    suffix = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
    return f"{stack_name}-{logical_id}"[:51] + "-" + suffix


def merge_globals(properties: dict[str, Any], globals_: dict[str, Any]) -> dict[str, Any]:
    """SAM ``Globals.Function`` under a function's own properties (maps merge, others replace)."""
    merged = dict(globals_)
    for key, value in properties.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            inner = dict(merged[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(inner.get(k), dict):
                    inner[k] = {**inner[k], **v}
                else:
                    inner[k] = v
            merged[key] = inner
        else:
            merged[key] = value
    return merged


@dataclass
class FunctionReader:
    """Reads one function's resolved properties (see the module docstring)."""

    base_dir: Path
    inline_dir: Path
    findings: Findings
    layers: dict[str, Any]  # layer logical id → resolved layer resource
    layer_refs: dict[str, str]  # layer Ref value → logical id
    assets: dict[str, str] = field(default_factory=dict)  # CDK S3 object key → asset path

    def read(
        self,
        logical_id: str,
        kind: str,
        props: dict[str, Any],
        metadata: dict[str, Any],
        name: str,
    ) -> FunctionDef | None:
        where = f"{logical_id}.Properties"
        ignored = sorted(k for k in props if k in _NOT_EMULATED and k not in _DESCRIPTIVE)
        if ignored:
            self.findings.ignore(f"{logical_id} ({kind}): {', '.join(ignored)} not emulated")
        for key in props:
            if key not in _READ and key not in _NOT_EMULATED:
                self.findings.problem(
                    f"{where}.{key}", f"not supported by sockway ({kind} property)"
                )
        if props.get("PackageType", "Zip") != "Zip":
            self.findings.problem(
                f"{where}.PackageType", "container image functions are not supported"
            )
            return None
        runtime = props.get("Runtime")
        if not isinstance(runtime, str):
            self.findings.problem(f"{where}.Runtime", "missing (a python3.x runtime is needed)")
            return None
        if not runtime.startswith(("python3", "nodejs")):
            self.findings.problem(
                f"{where}.Runtime",
                f"function {logical_id} uses {runtime}: only python3.x and nodejs runtimes "
                "are supported",
            )
            return None
        handler = props.get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            self.findings.problem(f"{where}.Handler", "missing or not module.function")
            return None
        code_dir = self._code_dir(logical_id, kind, props, metadata)
        if code_dir is None:
            return None
        environment: dict[str, str] = {}
        variables = (props.get("Environment") or {}).get("Variables") or {}
        if not isinstance(variables, dict):
            self.findings.problem(f"{where}.Environment.Variables", "must be a mapping")
        else:
            for key, value in variables.items():
                try:
                    environment[str(key)] = scalar_string(
                        value, f"{where}.Environment.Variables.{key}"
                    )
                except Exception as exc:
                    self.findings.problem(f"{where}.Environment.Variables.{key}", str(exc))
        return FunctionDef(
            logical_id=logical_id,
            name=name,
            # Python's "dir/module.function" is an import path; Node.js keeps "dir/file.export".
            handler=handler if runtime.startswith("nodejs") else handler.replace("/", "."),
            code_dir=code_dir,
            runtime=runtime,
            environment=environment,
            timeout_s=float(self._number(props, "Timeout", 3, where)),
            memory_mb=int(self._number(props, "MemorySize", 128, where)),
            reserved_concurrency=self._reserved(props, where),
            layer_paths=self._layers(props.get("Layers") or [], where),
        )

    def _number(self, props: dict[str, Any], key: str, default: float, where: str) -> float:
        value = props.get(key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            self.findings.problem(f"{where}.{key}", f"not a number: {value!r}")
            return default

    def _reserved(self, props: dict[str, Any], where: str) -> int | None:
        value = props.get("ReservedConcurrentExecutions")
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.findings.problem(f"{where}.ReservedConcurrentExecutions", "not a number")
            return None
        if not 0 <= number <= 1000:
            self.findings.problem(
                f"{where}.ReservedConcurrentExecutions", "sockway accepts 0 to 1000"
            )
            return None
        return number

    def _code_dir(
        self, logical_id: str, kind: str, props: dict[str, Any], metadata: dict[str, Any]
    ) -> Path | None:
        where = f"{logical_id}.Properties"
        asset = metadata.get("aws:asset:path")
        if isinstance(asset, str):  # CDK: the asset directory next to the template
            return self._local_dir(self.base_dir / asset, f"{logical_id}.Metadata.aws:asset:path")
        inline = props.get("InlineCode")
        code = props.get("Code")
        if isinstance(code, dict) and "ZipFile" in code:
            inline = code["ZipFile"]
        if isinstance(inline, str):
            directory = self.inline_dir / logical_id
            directory.mkdir(parents=True, exist_ok=True)
            module = str(props.get("Handler", "index.handler")).rpartition(".")[0] or "index"
            (directory / f"{module.replace('.', '/')}.py").write_text(inline, encoding="utf-8")
            return directory
        if isinstance(code, dict) and self.assets.get(str(code.get("S3Key"))):
            # CDK without asset metadata: the assets manifest names the directory.
            where_key = f"{where}.Code.S3Key"
            return self._local_dir(self.base_dir / self.assets[str(code["S3Key"])], where_key)
        key = "CodeUri" if kind == SERVERLESS_FUNCTION else "Code"
        uri = props.get("CodeUri") if kind == SERVERLESS_FUNCTION else code
        if uri is None and kind == SERVERLESS_FUNCTION:
            uri = "."  # SAM: no CodeUri means the template's directory
        if isinstance(uri, str) and not uri.startswith("s3://"):
            return self._local_dir(self.base_dir / uri, f"{where}.{key}")
        self.findings.problem(
            f"{where}.{key}",
            "code in S3 is not supported: point it at a local directory (or run sockway on "
            "the template `sam build` or `cdk synth` wrote)",
        )
        return None

    def _local_dir(self, path: Path, where: str) -> Path | None:
        if path.suffix == ".zip":
            self.findings.problem(where, f"{path}: zip archives are not supported, unpack it")
            return None
        if not path.is_dir():
            self.findings.problem(where, f"directory {path} does not exist")
            return None
        return path.resolve()

    def _layers(self, layers: Any, where: str) -> list[Path]:
        paths: list[Path] = []
        if not isinstance(layers, list):
            self.findings.problem(f"{where}.Layers", "must be a list")
            return paths
        for i, ref in enumerate(layers):
            loc = f"{where}.Layers[{i}]"
            logical_id = self.layer_refs.get(ref) if isinstance(ref, str) else None
            if logical_id is None:
                if isinstance(ref, str) and _POWERTOOLS_LAYER.match(ref) and _has_powertools():
                    self.findings.ignore(
                        f"{loc}: the Powertools layer; the installed aws-lambda-powertools is used"
                    )
                    continue
                self.findings.problem(
                    loc, f"layer {ref!r} is not a layer of this template with local content"
                )
                continue
            layer = self.layers[logical_id]
            props = layer.get("Properties") or {}
            content = props.get("ContentUri") or props.get("Content")
            metadata = layer.get("Metadata") or {}
            asset = metadata.get("aws:asset:path")
            if isinstance(asset, str):
                content = asset
            if not isinstance(content, str):
                self.findings.problem(
                    f"{logical_id}.Properties.Content", "layer content must be a local directory"
                )
                continue
            root = self._local_dir(self.base_dir / content, f"{logical_id}.Properties")
            if root is None:
                continue
            python = root / "python"
            paths.append(python if python.is_dir() else root)
            for site in sorted(python.glob("lib/python3*/site-packages")):
                paths.append(site)
        return paths


def cdk_assets(directory: Path) -> dict[str, str]:
    """S3 object key → asset directory, from a ``cdk.out``'s ``*.assets.json`` manifests."""
    import json

    out: dict[str, str] = {}
    for manifest in sorted(directory.glob("*.assets.json")):
        try:
            files = json.loads(manifest.read_text()).get("files", {})
        except (OSError, ValueError):
            continue
        for entry in files.values():
            path = (entry.get("source") or {}).get("path")
            for destination in (entry.get("destinations") or {}).values():
                key = destination.get("objectKey")
                if isinstance(path, str) and isinstance(key, str):
                    out[key] = path
    return out


def _has_powertools() -> bool:
    import importlib.util

    return importlib.util.find_spec("aws_lambda_powertools") is not None
