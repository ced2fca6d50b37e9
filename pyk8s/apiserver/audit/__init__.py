"""The audit log, as upstream's k8s.io/apiserver audit: a Policy (policy.py) decides per
request at which level it is recorded, Events (event.py) are built at the request's stages
by the HTTP filter (filter.py) and written as JSON lines by the log backend (backend.py),
which rotates its file as upstream's lumberjack does."""
