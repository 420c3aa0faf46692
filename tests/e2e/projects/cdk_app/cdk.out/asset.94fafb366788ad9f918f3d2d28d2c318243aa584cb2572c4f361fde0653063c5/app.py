from aws_lambda_powertools.event_handler import AppSyncEventsResolver

app = AppSyncEventsResolver()


@app.on_publish("/chat/*")
def shout(payload):
    return {**payload, "text": str(payload.get("text", "")).upper(), "checked": True}


def handler(event, context):
    return app.resolve(event, context)
