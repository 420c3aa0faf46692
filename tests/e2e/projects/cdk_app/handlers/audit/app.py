import os


def handler(event, context):
    return {"text": f"{os.environ['AUDIT_PREFIX']}: {event['text']}"}
