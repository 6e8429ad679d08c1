"""Security layers: post-quantum crypto, identities, the audit log, attestation, the Cedar
policy engine, behavioral analysis and attenuable tokens, and their kernel glue."""
