"""What ``Ref`` and ``Fn::GetAtt`` give for each resource of a template: the physical names
and ARNs CloudFormation would assign (a function's ``FunctionName`` or the stack-derived default,
an API's id, a table's ARN ...), computed the same way on every run so that ids stay stable.
A value that names the API itself is rewritten to where sockway serves it afterwards
(``projects.template``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sockway.projects import apigw, appsync, dynamodb
from sockway.projects.intrinsics import IntrinsicError, Resolver, Stack
from sockway.projects.lambda_functions import FUNCTION_TYPES, LAYER_TYPES, default_function_name
from sockway.projects.resources import derived_id


class StackNames:
    """``Ref`` / ``Fn::GetAtt`` of the resources ``raw`` declares (their bodies as written).
    ``resolver`` gives the template's resolver, for name properties that use intrinsics."""

    def __init__(
        self,
        raw: dict[str, Any],
        stack: Stack,
        keys: dict[str, appsync.ApiKeyDef],
        served_types: frozenset[str],
        resolver: Callable[[], Resolver],
    ) -> None:
        self.raw = raw
        self.stack = stack
        self.keys = keys
        self.served_types = served_types
        self.resolver = resolver
        self._names: dict[str, Any] = {}
        self._naming: set[str] = set()

    def safe_ref(self, logical_id: str) -> Any:
        try:
            return self.ref(logical_id)
        except (KeyError, IntrinsicError):
            return logical_id

    def name_property(self, logical_id: str, key: str) -> Any:
        """A resource's own name property (``FunctionName``, ``TableName``), resolved."""
        body = self.raw[logical_id]
        value = (body.get("Properties") or {}).get(key)
        if value is None:
            return None
        if logical_id in self._naming:
            raise IntrinsicError(f"{logical_id}.Properties.{key}", "refers to itself")
        self._naming.add(logical_id)
        try:
            return self.resolver().resolve(value, f"{logical_id}.Properties.{key}")
        finally:
            self._naming.discard(logical_id)

    def ref(self, logical_id: str) -> Any:
        if logical_id in self._names:
            return self._names[logical_id]
        body = self.raw[logical_id]  # KeyError: not a resource
        kind = str(body.get("Type", ""))
        stack = self.stack
        value: Any
        if kind in FUNCTION_TYPES:
            value = self.name_property(logical_id, "FunctionName") or default_function_name(
                stack.stack_name, logical_id
            )
        elif kind in dynamodb.TYPES:
            value = self.name_property(logical_id, "TableName") or default_function_name(
                stack.stack_name, logical_id
            )
        elif kind == apigw.API:
            value = derived_id(f"api/{logical_id}", 10)
        elif kind == apigw.STAGE:
            value = self.name_property(logical_id, "StageName") or logical_id
        elif kind in appsync.REF_TYPES:
            value = appsync.ref_value(kind, logical_id, stack)
        elif kind in LAYER_TYPES:
            value = f"arn:aws:lambda:{stack.region}:{stack.account_id}:layer:{logical_id}:1"
        elif kind.startswith("AWS::ApiGatewayV2::"):
            value = derived_id(f"{kind}/{logical_id}", 7)
        elif kind.startswith("AWS::IAM::"):
            value = f"{stack.stack_name}-{logical_id}"
        else:
            value = logical_id
        self._names[logical_id] = value
        return value

    def get_att(self, logical_id: str, attribute: str) -> Any:
        body = self.raw[logical_id]
        kind = str(body.get("Type", ""))
        stack = self.stack
        name = self.ref(logical_id)
        if kind in FUNCTION_TYPES and attribute == "Arn":
            return f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{name}"
        if kind == apigw.API:
            if attribute == "ApiEndpoint":
                return f"wss://{name}.execute-api.{stack.region}.amazonaws.com"
            if attribute == "ApiId":
                return name
        if kind in dynamodb.TYPES:
            arn = f"arn:aws:dynamodb:{stack.region}:{stack.account_id}:table/{name}"
            if attribute == "Arn":
                return arn
            if attribute == "StreamArn":
                return f"{arn}/stream/1970-01-01T00:00:00.000"
        if kind == appsync.DATA_SOURCE and attribute == "Name":
            return self.name_property(logical_id, "Name")
        if kind.startswith("AWS::AppSync::"):
            return appsync.attribute(kind, logical_id, attribute, stack, self.keys)
        if kind.startswith("AWS::IAM::") and attribute == "Arn":
            return f"arn:aws:iam::{stack.account_id}:role/{name}"
        if attribute == "Arn":
            service = kind.split("::")[1].lower() if "::" in kind else "unknown"
            return f"arn:aws:{service}:{stack.region}:{stack.account_id}:{logical_id}"
        if kind not in self.served_types:
            # A resource sockway does not emulate: a stand-in value (it is listed as such).
            return f"{logical_id}.{attribute}"
        raise KeyError(attribute)
