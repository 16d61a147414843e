//! The NTS source kind (Network Time Security, RFC 8915): an NTP server
//! whose replies are authenticated with keys from a TLS 1.3 key exchange.
//! Sans-IO like the rest of the core: the shell runs the TLS session and
//! the UDP socket; this module holds the key-exchange record codec
//! ([`ke`]), the extension-field codec and the AES-SIV sealing and opening
//! given the keys ([`ef`]), and the source's state machine ([`source`]):
//! cookies, unique identifiers, re-keying, and the rule that only an
//! authenticated reply ever reaches the NTP machine beneath it.
//! Randomness (unique identifiers, AEAD nonces) is passed in.

pub mod ef;
pub mod ke;
pub mod source;

pub use ef::{Key, OpenError};
pub use ke::{KeError, KeResponse};
pub use source::{KeFailure, KeOutcome, NtsError, NtsReport, NtsSource};
