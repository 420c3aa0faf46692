"""The live console: a web page served by the gateway at ``/_sockway/`` showing its APIs,
connections, a tail of messages and handler invocations, with actions (send, publish,
disconnect). It listens to the front doors through ``observability.tap`` and acts through
``core.Node`` and ``frontdoor.contract.Operable``; it imports no front door."""
