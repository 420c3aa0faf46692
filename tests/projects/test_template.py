"""Translating templates into sockway's configuration (``projects.template``): what is read,
what is listed as not emulated, what is refused with its logical id and property path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import parse_config
from sockway.projects.problems import ProjectError
from sockway.projects.project import Project
from sockway.projects.template import read_template

BASE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $default
      Target: !Sub integrations/${Integ}
  Integ:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: handlers/app.handler
      Runtime: python3.12
"""


_AWS_PROXY = (
    "    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}"
)
_HTTP_PROXY = (
    "    Properties: {ApiId: !Ref Api, IntegrationType: HTTP_PROXY, IntegrationUri: http://h/x"
)


def _read(tmp_path: Path, extra: str = "", replace: tuple[str, str] = ("", "")) -> Project:
    (tmp_path / "code" / "handlers").mkdir(parents=True, exist_ok=True)
    (tmp_path / "code" / "handlers" / "app.py").write_text("def handler(e, c):\n    return {}\n")
    text = BASE.replace(*replace) if replace[0] else BASE
    (tmp_path / "template.yaml").write_text(text + extra)
    return read_template(
        tmp_path / "template.yaml", local_host="127.0.0.1:9999", state_dir=tmp_path / "state"
    )


def _problems(tmp_path: Path, extra: str = "", replace: tuple[str, str] = ("", "")) -> list[str]:
    with pytest.raises(ProjectError) as info:
        _read(tmp_path, extra, replace)
    return info.value.problems


def test_a_minimal_template_becomes_a_valid_configuration(tmp_path: Path) -> None:
    project = _read(tmp_path)
    (api,) = project.config["apis"]
    route: dict[str, Any] = api["routes"]["$default"]
    assert route["handler"] == "handlers.app.handler"  # dir/file.function, as Lambda imports it
    assert route["code_dir"] == str((tmp_path / "code").resolve())
    assert (route["runtime"], route["timeout_s"], route["memory_mb"]) == ("process", 3.0, 128)
    assert api["stage"] == "dev" and project.warnings  # no Stage: said so
    config = {**project.config, "listen": "127.0.0.1:0", "state_dir": str(tmp_path / "s")}
    settings = parse_config(config, tmp_path)
    assert settings.apis[0].routes["$default"].handler == "handlers.app.handler"
    assert list(settings.functions) == [next(iter(project.functions.values())).name]


def test_local_layers_go_on_the_function_path(tmp_path: Path) -> None:
    (tmp_path / "layer" / "python").mkdir(parents=True)
    extra = """
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layer/}
"""
    replace = (
        "      Runtime: python3.12\n",
        "      Runtime: python3.12\n      Layers: [!Ref Shared]\n",
    )
    project = _read(tmp_path, extra, replace)
    route = project.config["apis"][0]["routes"]["$default"]
    assert route["environment"]["PYTHONPATH"] == str((tmp_path / "layer" / "python").resolve())


@pytest.mark.parametrize(
    ("replace", "extra", "expected"),
    [
        (
            ("CodeUri: code/", "CodeUri: s3://bucket/code.zip"),
            "",
            "Fn.Properties.CodeUri: code in S3",
        ),
        (
            ("Runtime: python3.12", "Runtime: java21"),
            "",
            "Fn.Properties.Runtime: function Fn uses java21",
        ),
        (
            ("Runtime: python3.12", "Runtime: python3.12\n      FileSystemConfigs: []"),
            "",
            "Fn.Properties.FileSystemConfigs: not supported by sockway",
        ),
        (
            ("IntegrationType: AWS_PROXY", "IntegrationType: AWS"),
            "",
            "Integ.Properties.IntegrationType: 'AWS'",
        ),
        (
            ("RouteKey: $default", "RouteKey: $default\n      ApiKeyRequired: true"),
            "",
            "Route.Properties.ApiKeyRequired: API keys are not supported",
        ),
        (
            ("", ""),
            """
  StageA:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: !Ref Api, StageName: a}
  StageB:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: !Ref Api, StageName: b}
""",
            "StageB.Properties.StageName: API Api has several stages",
        ),
        (
            (
                "Transform: AWS::Serverless-2016-10-31",
                "Transform: [AWS::Serverless-2016-10-31, Custom]",
            ),
            "",
            "Transform: 'Custom': only AWS::Serverless-2016-10-31",
        ),
        (("", ""), "Parameters:\n  Needed: {Type: String}\n", "Parameters.Needed: no Default"),
        (
            (_AWS_PROXY, _HTTP_PROXY + ", IntegrationMethod: FETCH}"),
            "",
            "Integ.Properties.IntegrationMethod: 'FETCH': one of",
        ),
        (
            (
                _AWS_PROXY,
                _HTTP_PROXY + ", RequestParameters: {integration.request.path.p: "
                "context.connectionId}}",
            ),
            "",
            "Integ.Properties.RequestParameters: integration.request.path.p: only "
            "integration.request.header.NAME",
        ),
        (
            (
                _AWS_PROXY,
                _HTTP_PROXY + ", RequestParameters: {integration.request.header.a: "
                "context.identity.apiKey}}",
            ),
            "",
            "Integ.Properties.RequestParameters: integration.request.header.a: "
            "'context.identity.apiKey': sockway's events carry these context variables",
        ),
        (
            # Route request headers exist only on $connect; this integration serves $default.
            (
                _AWS_PROXY,
                _HTTP_PROXY + ", RequestParameters: {integration.request.header.a: "
                "route.request.header.Auth}}",
            ),
            "",
            "Integ.Properties.RequestParameters: route.request.header.Auth: route request "
            "headers and query strings exist only on $connect, and route Route ($default)",
        ),
        (
            (
                _AWS_PROXY,
                _AWS_PROXY.removesuffix("}") + ", RequestParameters: "
                "{integration.request.header.a: context.connectionId}}",
            ),
            "",
            "Integ.Properties.RequestParameters: honoured only on HTTP_PROXY integrations",
        ),
        (
            (
                "RouteKey: $default",
                "RouteKey: $default\n      RequestParameters: "
                "{route.request.header.X: {Required: false}}",
            ),
            "",
            "Route.Properties.RequestParameters.route.request.header.X: route request "
            "parameters exist only on $connect",
        ),
        (
            (
                "RouteKey: $default",
                "RouteKey: $connect\n      RequestParameters: "
                "{route.request.querystring.t: {Required: true}}",
            ),
            "",
            "Route.Properties.RequestParameters.route.request.querystring.t.Required: required "
            "route parameters are not enforced",
        ),
        (
            (_AWS_PROXY, _HTTP_PROXY + ", RequestTemplates: {application/json: x}}"),
            "",
            "Integ.Properties.RequestTemplates: not supported by sockway",
        ),
    ],
)
def test_what_cannot_be_honoured_is_named(
    tmp_path: Path, replace: tuple[str, str], extra: str, expected: str
) -> None:
    problems = _problems(tmp_path, extra, replace)
    assert any(p.startswith(expected) for p in problems), problems


def test_http_proxy_and_the_api_endpoint(tmp_path: Path) -> None:
    replace = (
        "    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}",
        "    Properties: {ApiId: !Ref Api, IntegrationType: HTTP_PROXY, IntegrationUri: http://127.0.0.1:7/x}",
    )
    extra = """
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: handlers/app.handler
      Runtime: python3.12
      Environment:
        Variables:
          WS: !GetAtt Api.ApiEndpoint
          CALLBACK: !Sub https://${Api}.execute-api.${AWS::Region}.amazonaws.com/dev
          DEBUG: true
"""
    project = _read(tmp_path, extra, replace)
    route = project.config["apis"][0]["routes"]["$default"]
    assert route["handler"] == "http://127.0.0.1:7/x"
    # Served as API Gateway's HTTP_PROXY (the message as-is), IntegrationMethod's default POST.
    assert route["http_proxy"] == {"method": "POST", "request_parameters": {}}
    assert not any("HTTP_PROXY" in w for w in project.warnings)
    other = next(v for k, v in project.config["functions"].items() if "-Other-" in k)
    env = other["environment"]
    assert env["WS"] == "wss://127.0.0.1:9999"
    assert env["CALLBACK"] == "https://127.0.0.1:9999/dev"
    assert env["DEBUG"] == "true"


def test_resources_not_emulated_are_listed_and_stand_in_for_outputs(tmp_path: Path) -> None:
    extra = """
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: !Ref Nowhere}
  Cdn:
    Type: AWS::CloudFront::Distribution
    Properties:
      DistributionConfig: {Origins: [{DomainName: !GetAtt Bucket.DomainName}]}
Outputs:
  Site:
    Value: !Join ['', ['https://', !GetAtt Cdn.DomainName]]
"""
    project = _read(tmp_path, extra)  # Bucket's !Ref Nowhere is never resolved: not read
    assert "Bucket (AWS::S3::Bucket)" in project.ignored
    assert "Cdn (AWS::CloudFront::Distribution): not emulated" in project.ignored
    assert project.outputs["Site"] == "https://Cdn.DomainName"


def test_samconfig_parameter_overrides_fill_parameters(tmp_path: Path) -> None:
    extra = """
Parameters:
  Greeting: {Type: String, Default: hi}
  Other: {Type: String, Default: x}
"""
    replace = (
        "      Runtime: python3.12\n",
        "      Runtime: python3.12\n      Environment:\n"
        "        Variables: {GREETING: !Ref Greeting, OTHER: !Ref Other}\n",
    )
    (tmp_path / "samconfig.toml").write_text(
        "version = 0.1\n[default.deploy.parameters]\n"
        'parameter_overrides = "Greeting=\\"hello there\\" Other=y"\n'
    )
    project = _read(tmp_path, extra, replace)
    env = project.config["apis"][0]["routes"]["$default"]["environment"]
    assert (env["GREETING"], env["OTHER"]) == ("hello there", "y")


def test_the_region_is_the_stacks(tmp_path: Path) -> None:
    (tmp_path / "code" / "handlers").mkdir(parents=True)
    (tmp_path / "code" / "handlers" / "app.py").write_text("def handler(e, c):\n    return {}\n")
    (tmp_path / "template.yaml").write_text(BASE)
    project = read_template(
        tmp_path / "template.yaml",
        local_host="127.0.0.1:9999",
        state_dir=tmp_path / "state",
        region="eu-west-1",
    )
    assert project.config["apis"][0]["region"] == "eu-west-1"
    assert "*.execute-api.eu-west-1.amazonaws.com" in project.config["tls"]["names"]


def test_every_bad_request_parameter_is_named(tmp_path: Path) -> None:
    """``check-config --template`` lists each mapping sockway cannot evaluate, not the first."""
    replace = (
        _AWS_PROXY,
        _HTTP_PROXY + ", RequestParameters: {integration.request.header.a: context.nope, "
        "integration.request.path.p: context.connectionId, "
        "integration.request.header.c: route.request.querystring.q, "
        "integration.request.header.ok: context.connectionId}}",
    )
    problems = [p for p in _problems(tmp_path, "", replace) if p.startswith("Integ.")]
    assert len(problems) == 3, problems
    assert "integration.request.header.a: 'context.nope'" in problems[0]
    assert "integration.request.path.p: only" in problems[1]
    assert "route.request.querystring.q: route request headers" in problems[2]
