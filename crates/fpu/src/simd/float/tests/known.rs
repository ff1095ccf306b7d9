//! Known cases: unmasked exceptions, approximations, claims.
