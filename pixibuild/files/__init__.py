"""Writing files safely and reproducibly, and hashing them: atomic outputs, a deterministic tar
writer, canonical-JSON and file digests. Imports nothing else of pixibuild but `errors`."""
