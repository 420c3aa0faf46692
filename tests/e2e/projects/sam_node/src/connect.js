// $connect: refuses a client that asks to be refused, admits every other.
exports.handler = async (event) => {
  const params = event.queryStringParameters || {};
  return { statusCode: params.refuse ? 403 : 200 };
};
