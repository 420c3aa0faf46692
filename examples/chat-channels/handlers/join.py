"""``$connect``: put the new connection into the channel ``chat``."""

import os
import ssl
import urllib.request
from typing import Any
from urllib.parse import quote

CHANNEL = "chat"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event["requestContext"]
    connection_id = quote(request_context["connectionId"], safe="")
    url = (
        f"https://{request_context['domainName']}/{request_context['stage']}"
        f"/@connections/{connection_id}/channels/{CHANNEL}"
    )
    # sockway points AWS_CA_BUNDLE at a bundle that trusts its development CA; read it at call
    # time, because the gateway sets it after the handler modules are imported.
    tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
    request = urllib.request.Request(url, method="PUT")
    with urllib.request.urlopen(request, context=tls, timeout=10):
        pass  # 204: joined; an error status raises and $connect rejects the client
    return {"statusCode": 200}
