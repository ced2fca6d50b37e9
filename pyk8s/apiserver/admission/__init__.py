"""Admission control, as upstream's `k8s.io/apiserver/pkg/admission`: a chain of mutating
plugins, then validating plugins, run by the store on every write (dry runs included)."""
from pyk8s.apiserver.admission.chain import Attributes, Chain, Plugin, forbidden

__all__ = ["Attributes", "Chain", "Plugin", "forbidden"]
