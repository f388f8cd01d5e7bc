"""Jobs: the model, queue operations, handler contract and registry, data schemas,
sealing, artifacts."""
