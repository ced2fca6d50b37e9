"""The enabled admission plugins, in upstream's order (mutating ones run first, then the
validating ones, each phase in this order)."""
from __future__ import annotations

from typing import Any

from pyk8s.apiserver.admission.certificates import (CertificateApproval, CertificateSigning,
                                                    CertificateSubjectRestriction)
from pyk8s.apiserver.admission.chain import Attributes, Chain
from pyk8s.apiserver.admission.defaultstorageclass import DefaultStorageClass
from pyk8s.apiserver.admission.defaulttolerationseconds import DefaultTolerationSeconds
from pyk8s.apiserver.admission.limitranger import LimitRanger
from pyk8s.apiserver.admission.namespacelifecycle import NamespaceLifecycle
from pyk8s.apiserver.admission.noderestriction import NodeRestriction
from pyk8s.apiserver.admission.priority import Priority
from pyk8s.apiserver.admission.resourcequota import ResourceQuota
from pyk8s.apiserver.admission.serviceaccount import ServiceAccount
from pyk8s.apiserver.admission.webhook import Webhooks

ORDER = ("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction",
         "Priority", "DefaultStorageClass", "DefaultTolerationSeconds", "CertificateApproval",
         "CertificateSigning", "CertificateSubjectRestriction", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "ResourceQuota")


def admission_chain(server: Any) -> Chain:
    def namespaced(attrs: Attributes) -> bool:
        return server.is_namespaced(attrs.group, attrs.version, attrs.resource)

    disabled = set(getattr(server.config, "disabled_admission_plugins", ()) or ())
    unknown = disabled - set(ORDER)
    if unknown:
        raise ValueError(f"unknown admission plugins: {', '.join(sorted(unknown))}")
    return Chain([p for p in (
        NamespaceLifecycle(server.check_namespace, namespaced),
        LimitRanger(server.list_objects),
        ServiceAccount(server.service_account),
        NodeRestriction(server),
        Priority(server.list_objects),
        DefaultStorageClass(server.list_objects),
        DefaultTolerationSeconds(),
        CertificateApproval(server),
        CertificateSigning(server),
        CertificateSubjectRestriction(),
        Webhooks(server, mutating=True),
        Webhooks(server, mutating=False),
        ResourceQuota(server),
    ) if p.name not in disabled])


async def close_admission(chain: Chain) -> None:
    for p in chain.plugins:
        if isinstance(p, Webhooks):
            await p.close()
