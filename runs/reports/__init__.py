"""Pages for people: the demo's catalog report (`catalog`) and the audit report (`audit`)."""
