"""The cross-backend conformance suite: node and model cases, metrics, manifests, report."""
