"""Clients of the Kubernetes API over HTTP (the controllers' only way to the server)."""
from pyk8s.client.rest import (AlreadyExists, APIResource, ApiError, ClientConfig, Conflict,
                               Expired, NotFound, RESTClient, error_from_status,
                               resource_path, server_preferred_resources)

__all__ = ["AlreadyExists", "APIResource", "ApiError", "ClientConfig", "Conflict", "Expired",
           "NotFound", "RESTClient", "error_from_status", "resource_path",
           "server_preferred_resources"]
