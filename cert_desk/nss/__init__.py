"""Browsers' NSS databases: find them, read and change their PKCS#11 module lists, prove a TLS
client login through them. Qt-free; every tool (modutil, certutil, tstclnt) runs as a subprocess
with a timeout, closed stdin, and PINs only in 0600 temporary files."""
