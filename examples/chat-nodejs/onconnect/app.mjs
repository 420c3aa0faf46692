// $connect: remember the connection (an ES module; the AWS SDK comes from the runtime).
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';

const db = DynamoDBDocumentClient.from(new DynamoDBClient({}));

export const handler = async (event) => {
  const { connectionId } = event.requestContext;
  try {
    await db.send(new PutCommand({
      TableName: process.env.TABLE_NAME,
      Item: { connectionId, connectedAt: Date.now() },
    }));
  } catch (err) {
    console.error('could not store', connectionId, err);
    return { statusCode: 500, body: 'Failed to connect: ' + err.message };
  }
  return { statusCode: 200, body: 'Connected.' };
};
