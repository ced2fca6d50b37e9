"""Services' registry, as upstream's `pkg/registry/core/service`: the strategy (type-dependent
fields, allocated values kept across updates), the allocators of cluster IPs and node ports
(one storage key per allocated value, created atomically), the per-write allocation
transactions, the store that runs them, and the repair pass that reconciles allocations with
the stored Services."""
