"""PC/SC: smart card readers and their cards (pyscard is confined to :mod:`cert_desk.pcsc.readers`)."""
