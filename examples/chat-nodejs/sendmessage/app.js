// sendmessage: post the message to every stored connection; forget the ones that are gone.
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';

const db = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const table = process.env.TABLE_NAME;

async function connectionIds() {
  const ids = [];
  let ExclusiveStartKey;
  do {
    const page = await db.send(new ScanCommand({
      TableName: table, ProjectionExpression: 'connectionId', ExclusiveStartKey,
    }));
    ids.push(...page.Items.map((item) => item.connectionId));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return ids;
}

export const handler = async (event) => {
  const { domainName, stage } = event.requestContext;
  // Deployed behind a custom domain, the endpoint is configured; else it is built.
  const endpoint = process.env.MANAGEMENT_ENDPOINT ?? `https://${domainName}/${stage}`;
  const api = new ApiGatewayManagementApiClient({ endpoint });
  const message = JSON.parse(event.body).message;

  await Promise.all((await connectionIds()).map(async (connectionId) => {
    try {
      await api.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: message }));
    } catch (err) {
      if (err.name !== 'GoneException' && err.$metadata?.httpStatusCode !== 410) throw err;
      console.log('Found stale connection, deleting', connectionId);
      await db.send(new DeleteCommand({ TableName: table, Key: { connectionId } }));
    }
  }));
  return { statusCode: 200, body: 'Data sent.' };
};
