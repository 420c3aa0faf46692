// A CDK app written for sockway's tests, in the shape CDK WebSocket and AppSync Events apps
// have: L2 constructs, Python functions from local assets, a connections table, a Lambda
// authorizer on $connect, an Events API with an API key and a DIRECT Lambda publish handler
// (Powertools), and one function invoking another through the Lambda Invoke API.
//
// Synthesized into cdk.out/ (committed) with aws-cdk-lib 2.276.0 and constructs 10:
//   npm install aws-cdk-lib@2.276.0 constructs@10 && node app.js
// (the context below is what `cdk synth` passes: asset and path metadata in the template)
const cdk = require("aws-cdk-lib");
const lambda = require("aws-cdk-lib/aws-lambda");
const dynamodb = require("aws-cdk-lib/aws-dynamodb");
const apigw = require("aws-cdk-lib/aws-apigatewayv2");
const integrations = require("aws-cdk-lib/aws-apigatewayv2-integrations");
const authorizers = require("aws-cdk-lib/aws-apigatewayv2-authorizers");
const appsync = require("aws-cdk-lib/aws-appsync");
const path = require("path");

const app = new cdk.App({
  outdir: path.join(__dirname, "cdk.out"),
  context: { "aws:cdk:enable-asset-metadata": true, "aws:cdk:enable-path-metadata": true },
});
const stack = new cdk.Stack(app, "ChatStack", { env: { region: "us-east-1" } });

const table = new dynamodb.Table(stack, "Connections", {
  partitionKey: { name: "connectionId", type: dynamodb.AttributeType.STRING },
  billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
  timeToLiveAttribute: "expiresAt",
  removalPolicy: cdk.RemovalPolicy.DESTROY,
});

const fn = (id, handler, code, environment) =>
  new lambda.Function(stack, id, {
    runtime: lambda.Runtime.PYTHON_3_12,
    handler,
    code: lambda.Code.fromAsset(path.join(__dirname, "handlers", code)),
    timeout: cdk.Duration.seconds(15),
    memorySize: 256,
    environment,
  });

const audit = fn("AuditFunction", "app.handler", "audit", { AUDIT_PREFIX: "audited" });
const wsEnv = { TABLE_NAME: table.tableName };
const connect = fn("ConnectFunction", "app.connect", "ws", wsEnv);
const disconnect = fn("DisconnectFunction", "app.disconnect", "ws", wsEnv);
const authorize = fn("AuthorizeFunction", "app.authorize", "ws", { SECRET: "open-sesame" });
const notify = fn("NotifyFunction", "app.notify", "ws", {
  ...wsEnv,
  AUDIT_FUNCTION: audit.functionName,
});
table.grantReadWriteData(connect);
table.grantReadWriteData(disconnect);
table.grantReadData(notify);
audit.grantInvoke(notify);

const api = new apigw.WebSocketApi(stack, "ChatApi", {
  connectRouteOptions: {
    integration: new integrations.WebSocketLambdaIntegration("ConnectInteg", connect),
    authorizer: new authorizers.WebSocketLambdaAuthorizer("Auth", authorize, {
      identitySource: ["route.request.header.X-Secret"],
    }),
  },
  disconnectRouteOptions: {
    integration: new integrations.WebSocketLambdaIntegration("DisconnectInteg", disconnect),
  },
});
api.addRoute("notify", {
  integration: new integrations.WebSocketLambdaIntegration("NotifyInteg", notify),
  returnResponse: true,
});
const stage = new apigw.WebSocketStage(stack, "ProdStage", {
  webSocketApi: api,
  stageName: "prod",
  autoDeploy: true,
});
notify.addEnvironment("CALLBACK_URL", stage.callbackUrl);
stage.grantManagementApiAccess(notify);

const events = new appsync.EventApi(stack, "EventsApi", {
  apiName: "chat-events",
  authorizationConfig: {
    authProviders: [{ authorizationType: appsync.AppSyncAuthorizationType.API_KEY }],
  },
});
const onPublish = fn("OnPublishFunction", "app.handler", "events", {
  POWERTOOLS_SERVICE_NAME: "chat-events",
});
events.addChannelNamespace("chat", {
  publishHandlerConfig: {
    direct: true,
    dataSource: events.addLambdaDataSource("PublishSource", onPublish),
  },
});
events.addChannelNamespace("plain");

new cdk.CfnOutput(stack, "WebSocketUrl", { value: stage.url });
new cdk.CfnOutput(stack, "EventsHttp", { value: events.httpDns });

app.synth();
