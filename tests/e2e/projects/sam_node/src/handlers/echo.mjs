// Two-way route: answers with the function's own GREETING and what the client sent.
export const handler = async (event) => {
  const body = JSON.parse(event.body);
  return {
    statusCode: 200,
    body: JSON.stringify({
      reply: `${process.env.GREETING}, ${body.data}`,
      route: event.requestContext.routeKey,
      runtime: process.release.name,
    }),
  };
};
