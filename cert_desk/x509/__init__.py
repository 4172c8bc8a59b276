"""Certificates and public keys, with cryptography and asn1crypto (no Qt, no PKCS#11 calls)."""
