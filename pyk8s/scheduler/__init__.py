"""kube-scheduler: queue, cache, framework and the in-tree plugins (see scheduler.py)."""
