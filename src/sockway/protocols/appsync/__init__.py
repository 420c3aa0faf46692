"""AppSync Events wire protocol (appsync-events spec): pure functions, no sockets."""
