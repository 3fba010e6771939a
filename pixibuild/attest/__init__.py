"""What an environment is made of, as documents others can check: SBOMs (SPDX 2.3, CycloneDX 1.6)
and in-toto statements with SLSA v1 provenance, generated from the lock's records alone."""
