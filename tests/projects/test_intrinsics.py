"""Intrinsic functions against a local stack (``projects.intrinsics``), plain asserts."""

from __future__ import annotations

from typing import Any

import pytest

from sockway.projects.cfn_yaml import load_template_text
from sockway.projects.intrinsics import IntrinsicError, Resolver, Stack

TEMPLATE = """
AWSTemplateFormatVersion: 2010-09-09
Parameters: {}
Resources:
  Thing:
    Type: Test
    Properties:
      Plain: !Ref Api
      Endpoint: !GetAtt Api.ApiEndpoint
      Dns: !GetAtt [Events, Dns.Http]
      Callback: !Sub "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
      WithVars: !Sub ["${Scheme}://${Api}/${!Literal}", {Scheme: wss}]
      Attr: !Sub "${Events.Dns.Realtime}"
      Joined: !Join [",", [a, !Ref Stage, 3, true]]
      Second: !Select [1, !Split ["/", "a/b/c"]]
      Chosen: !If [IsProd, big, small]
      Gone: !If [IsProd, kept, !Ref AWS::NoValue]
      List: [one, !Ref AWS::NoValue, two]
      Mapped: !FindInMap [Sizes, !Ref Stage, Memory]
      Account: !Sub "${AWS::AccountId}:${AWS::Partition}:${AWS::StackName}"
"""


def _resolver(stage: str = "dev") -> tuple[Resolver, dict[str, Any]]:
    document = load_template_text(TEMPLATE, "t.yaml")
    refs = {"Api": "abcdefghij", "Stage": stage}
    atts = {
        ("Api", "ApiEndpoint"): "wss://abcdefghij.execute-api.eu-west-1.amazonaws.com",
        ("Events", "Dns.Http"): "x.appsync-api",
        ("Events", "Dns.Realtime"): "x.appsync-realtime-api",
    }

    def get_att(logical_id: str, attribute: str) -> Any:
        return atts[(logical_id, attribute)]

    resolver = Resolver(
        stack=Stack(region="eu-west-1"),
        parameters={},
        ref=lambda name: refs[name],
        get_att=get_att,
        mappings={"Sizes": {"dev": {"Memory": 128}, "prod": {"Memory": 1024}}},
        conditions={"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
    )
    return resolver, document["Resources"]["Thing"]["Properties"]


def test_short_forms_and_functions() -> None:
    resolver, props = _resolver()
    out = resolver.resolve(props, "Thing.Properties")
    assert out == {
        "Plain": "abcdefghij",
        "Endpoint": "wss://abcdefghij.execute-api.eu-west-1.amazonaws.com",
        "Dns": "x.appsync-api",
        "Callback": "https://abcdefghij.execute-api.eu-west-1.amazonaws.com/dev",
        "WithVars": "wss://abcdefghij/${Literal}",
        "Attr": "x.appsync-realtime-api",
        "Joined": "a,dev,3,true",
        "Second": "b",
        "Chosen": "small",
        "List": ["one", "two"],
        "Mapped": 128,
        "Account": "123456789012:aws:sockway-local",
    }


def test_conditions_follow_the_values() -> None:
    resolver, props = _resolver("prod")
    out = resolver.resolve(props, "Thing.Properties")
    assert (out["Chosen"], out["Gone"], out["Mapped"]) == ("big", "kept", 1024)


def test_the_template_version_stays_a_string() -> None:
    assert load_template_text(TEMPLATE, "t")["AWSTemplateFormatVersion"] == "2010-09-09"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Nope"}, "X.Ref: 'Nope' is neither a parameter nor a resource"),
        ({"Fn::GetAtt": ["Api", "Nope"]}, "Api.Nope: no such resource or attribute"),
        ({"Fn::If": ["Missing", 1, 2]}, "condition 'Missing' is not declared"),
        ({"Fn::ImportValue": "x"}, "Fn::ImportValue is not supported by sockway"),
        ({"Fn::FindInMap": ["Sizes", "qa", "Memory"]}, "Mappings.Sizes.qa.Memory does not exist"),
    ],
)
def test_errors_name_the_path(value: Any, message: str) -> None:
    resolver, _ = _resolver()
    with pytest.raises(IntrinsicError) as info:
        resolver.resolve(value, "X")
    assert message in str(info.value)
    assert str(info.value).startswith("X.")
