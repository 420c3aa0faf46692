"""AWS API Gateway WebSocket API compatibility (spec: shared/specs/apigw-websocket.md)."""
