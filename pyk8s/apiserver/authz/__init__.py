"""Authorization, as upstream's `k8s.io/apiserver/pkg/authorization` and
`plugin/pkg/auth/authorizer`: request `Attributes` → a `Decision` from a chain of
authorizers (`--authorization-mode`, default `Node,RBAC`).

- attributes.py  Attributes, Decision, the Authorizer / RuleResolver protocols, the
                 attributes of an HTTP request, upstream's Forbidden messages
- union.py       the chain (first Allow or Deny wins), AlwaysAllow, AlwaysDeny, the modes
- rbac.py        RBAC rule matching and the authorizer over indexes fed by the watch cache
- node.py        the Node authorizer: nodes read what their pods use (nodegraph.py, kept
                 from the watch cache), list / watch with their own field selectors, and
                 the system:node rules; nodeidentity.py: `system:node:<name>` → the node
- bootstrappolicy.py  upstream's bootstrap ClusterRoles / bindings / Roles, as data
- reconcile.py   creates and (additively) repairs the bootstrap policy at every start
"""
