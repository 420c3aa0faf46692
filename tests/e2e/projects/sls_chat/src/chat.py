import json
import os

from src.words import shout


def say(event, context):
    text = json.loads(event["body"]).get("text", "")
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "reply": f"{os.environ['SAY_PREFIX']}: {shout(text)}",
                "greeting": os.environ["GREETING"],
                "table": os.environ["TABLE_NAME"],
                "remaining_ms": context.get_remaining_time_in_millis(),
            }
        ),
    }
