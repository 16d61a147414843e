//! NTS extension fields (RFC 8915 section 5, on RFC 7822's extension field
//! format) and the AEAD around them: sealing a request given the
//! client-to-server key, and opening a reply given the server-to-client key.
//!
//! A request is the 48-byte NTP header, then Unique Identifier, NTS Cookie,
//! NTS Cookie Placeholders, and last the NTS Authenticator and Encrypted
//! Extension Fields (its ciphertext authenticates every byte before it; the
//! plaintext is empty). A reply must carry our Unique Identifier and end
//! with an authenticator that opens under the server-to-client key; the
//! new cookies are inside it, encrypted. Nothing here panics on any input.

use super::ke::{KEY_LEN, MAX_COOKIE_LEN};
use aes_siv::siv::Aes128Siv;
use aes_siv::KeyInit;
use thiserror::Error;

/// Unique Identifier extension field type.
pub const EF_UNIQUE_ID: u16 = 0x0104;
/// NTS Cookie.
pub const EF_COOKIE: u16 = 0x0204;
/// NTS Cookie Placeholder.
pub const EF_COOKIE_PLACEHOLDER: u16 = 0x0304;
/// NTS Authenticator and Encrypted Extension Fields.
pub const EF_AUTHENTICATOR: u16 = 0x0404;
/// Length of our unique identifiers (RFC 8915: at least 32).
pub const UID_LEN: usize = 32;
/// Length of our AEAD nonces (AES-SIV takes any; 16 as chronyd).
pub const NONCE_LEN: usize = 16;
/// The AES-SIV tag (synthetic IV) length.
pub const TAG_LEN: usize = 16;
/// RFC 7822: an extension field is at least 16 bytes long.
pub const MIN_EF_LEN: usize = 16;
/// The kiss code of an NTS NAK (RFC 8915 section 5.7).
pub const KISS_NTSN: [u8; 4] = *b"NTSN";
const HEADER_LEN: usize = crate::core::ntp::HEADER_LEN;

/// An AEAD key of one direction (AES-SIV-CMAC-256: 32 bytes). Its bytes
/// never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    fn siv(&self) -> Aes128Siv {
        // AES-SIV-CMAC-256 is AES-128 in SIV mode with a 256-bit key (a CMAC
        // key and a CTR key): the length is right by construction.
        Aes128Siv::new(&self.0.into())
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Append an extension field of `kind` with `body`, zero-padded to a
/// multiple of 4 and to at least [`MIN_EF_LEN`] in all.
fn push_ef(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    let len = (4 + padded(body.len())).max(MIN_EF_LEN);
    out.extend_from_slice(&kind.to_be_bytes());
    // Bodies are at most a cookie (256 bytes): the length always fits.
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + len - 4 - body.len(), 0);
}

/// One extension field found in a packet: its type, where it starts, its
/// whole length, and its body (padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Field type.
    pub kind: u16,
    /// Offset of its first byte in the packet.
    pub start: usize,
    /// Its body (after the 4-byte type and length), padding included.
    pub body: &'a [u8],
}

/// Why extension fields do not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed extension field at byte {0}")]
pub struct Malformed(pub usize);

/// The extension fields of `bytes` from `from` on: each at least 16 bytes,
/// a multiple of 4, within the packet, up to its very end.
pub fn fields(bytes: &[u8], from: usize) -> Result<Vec<Field<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut at = from;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + 4) else {
            return Err(Malformed(at));
        };
        let kind = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        if len < MIN_EF_LEN || !len.is_multiple_of(4) {
            return Err(Malformed(at));
        }
        let Some(body) = bytes.get(at + 4..at + len) else {
            return Err(Malformed(at));
        };
        out.push(Field {
            kind,
            start: at,
            body,
        });
        at += len;
    }
    Ok(out)
}

/// Seal a request: the NTP header `header`, then our unique identifier,
/// `cookie`, `placeholders` cookie placeholders of the cookie's length (each
/// asks for one more cookie in the reply), and the authenticator made with
/// the client-to-server key `c2s` and `nonce`.
pub fn seal_request(
    header: &[u8; HEADER_LEN],
    uid: &[u8; UID_LEN],
    cookie: &[u8],
    placeholders: usize,
    c2s: &Key,
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 80 + (placeholders + 1) * (cookie.len() + 8));
    out.extend_from_slice(header);
    push_ef(&mut out, EF_UNIQUE_ID, uid);
    push_ef(&mut out, EF_COOKIE, cookie);
    let blank = vec![0u8; cookie.len()];
    for _ in 0..placeholders {
        push_ef(&mut out, EF_COOKIE_PLACEHOLDER, &blank);
    }
    push_authenticator(&mut out, c2s, nonce, &[]);
    out
}

/// Append the authenticator EF: nonce length, ciphertext length, nonce,
/// ciphertext of `plaintext` (the SIV tag first) with everything before
/// the field as associated data.
fn push_authenticator(out: &mut Vec<u8>, key: &Key, nonce: &[u8], plaintext: &[u8]) {
    let ad_len = out.len();
    // Encryption with two headers and any plaintext length cannot fail.
    let ct = key
        .siv()
        .encrypt([&out[..ad_len], nonce], plaintext)
        .unwrap_or_default();
    let mut body = Vec::with_capacity(4 + padded(nonce.len()) + padded(ct.len()));
    body.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    body.extend_from_slice(&(ct.len() as u16).to_be_bytes());
    body.extend_from_slice(nonce);
    body.resize(4 + padded(nonce.len()), 0);
    body.extend_from_slice(&ct);
    push_ef(out, EF_AUTHENTICATOR, &body);
}

/// What an authentic reply carried.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The new cookies (encrypted in the reply), each 1..=256 bytes.
    pub cookies: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened {{ cookies: {} }}", self.cookies.len())
    }
}

/// Why a reply is not an authentic answer to our request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpenError {
    /// Shorter than an NTP header, or its extension fields do not parse.
    #[error("malformed packet or extension fields")]
    Malformed,
    /// No unique identifier, or not the one of our request: not an answer
    /// to it (a stray, a late reply, a replay).
    #[error("unique identifier missing or not our request's")]
    NotOurs,
    /// An NTS NAK (kiss code NTSN) answering our request: the server did
    /// not accept the cookie. Unauthenticated by nature.
    #[error("NTS NAK: the server refused our cookie")]
    Nak,
    /// No authenticator, or one that is not the last field.
    #[error("no authenticator as the last extension field")]
    NoAuthenticator,
    /// The authenticator's lengths do not fit it.
    #[error("malformed authenticator")]
    BadAuthenticator,
    /// The ciphertext does not open under the key: the packet was altered
    /// or forged.
    #[error("authentication failed (altered or forged reply)")]
    Forged,
}

/// Check that `packet` answers the request with unique identifier `uid`
/// and is authenticated under the server-to-client key `s2c`; return the
/// cookies it carries. Only an `Ok` reply may be used.
pub fn open_reply(packet: &[u8], uid: &[u8; UID_LEN], s2c: &Key) -> Result<Opened, OpenError> {
    if packet.len() < HEADER_LEN {
        return Err(OpenError::Malformed);
    }
    let efs = fields(packet, HEADER_LEN).map_err(|_| OpenError::Malformed)?;
    let ids: Vec<&Field> = efs.iter().filter(|f| f.kind == EF_UNIQUE_ID).collect();
    if ids.is_empty() || ids.iter().any(|f| f.body != uid) {
        return Err(OpenError::NotOurs);
    }
    let auth = efs.iter().find(|f| f.kind == EF_AUTHENTICATOR);
    let nak = packet[1] == 0 && packet[12..16] == KISS_NTSN;
    let Some(auth) = auth else {
        return Err(if nak {
            OpenError::Nak
        } else {
            OpenError::NoAuthenticator
        });
    };
    if auth.start + 4 + auth.body.len() != packet.len() {
        return Err(OpenError::NoAuthenticator);
    }
    let plaintext = open_authenticator(packet, auth, s2c).map_err(|e| match (e, nak) {
        (OpenError::Forged, true) => OpenError::Nak,
        (e, _) => e,
    })?;
    let inner = fields(&plaintext, 0).map_err(|_| OpenError::Malformed)?;
    let cookies = inner
        .iter()
        .filter(|f| f.kind == EF_COOKIE)
        // The body is padded: chronyd's cookies are multiples of 4, and a
        // padded cookie is what the server would see again in any case.
        .filter(|f| !f.body.is_empty() && f.body.len() <= MAX_COOKIE_LEN)
        .map(|f| f.body.to_vec())
        .collect();
    Ok(Opened { cookies })
}

/// Open an authenticator field: the plaintext, or why not.
fn open_authenticator(packet: &[u8], auth: &Field, key: &Key) -> Result<Vec<u8>, OpenError> {
    let b = auth.body;
    if b.len() < 4 {
        return Err(OpenError::BadAuthenticator);
    }
    let nonce_len = u16::from_be_bytes([b[0], b[1]]) as usize;
    let ct_len = u16::from_be_bytes([b[2], b[3]]) as usize;
    if nonce_len == 0 || ct_len < TAG_LEN || 4 + padded(nonce_len) + padded(ct_len) > b.len() {
        return Err(OpenError::BadAuthenticator);
    }
    let nonce = &b[4..4 + nonce_len];
    let ct_at = 4 + padded(nonce_len);
    let ct = &b[ct_at..ct_at + ct_len];
    key.siv()
        .decrypt([&packet[..auth.start], nonce], ct)
        .map_err(|_| OpenError::Forged)
}

/// The server's side, for tests: read a sealed request and answer it.
#[cfg(test)]
pub(crate) mod server {
    use super::*;

    /// A request's unique identifier, cookie and number of placeholders,
    /// if it is authentic under `c2s`.
    pub fn open_request(packet: &[u8], c2s: &Key) -> Option<([u8; UID_LEN], Vec<u8>, usize)> {
        let efs = fields(packet, HEADER_LEN).ok()?;
        let uid: [u8; UID_LEN] = efs
            .iter()
            .find(|f| f.kind == EF_UNIQUE_ID)?
            .body
            .try_into()
            .ok()?;
        let cookie = efs.iter().find(|f| f.kind == EF_COOKIE)?.body.to_vec();
        let placeholders = efs
            .iter()
            .filter(|f| f.kind == EF_COOKIE_PLACEHOLDER)
            .count();
        let auth = efs.last().filter(|f| f.kind == EF_AUTHENTICATOR)?;
        open_authenticator(packet, auth, c2s).ok()?;
        Some((uid, cookie, placeholders))
    }

    /// A reply: `header`, the unique identifier, and the authenticator
    /// under `s2c` with `cookies` encrypted inside.
    pub fn seal_reply(
        header: &[u8; HEADER_LEN],
        uid: &[u8; UID_LEN],
        cookies: &[Vec<u8>],
        s2c: &Key,
        nonce: &[u8],
    ) -> Vec<u8> {
        let mut out = header.to_vec();
        push_ef(&mut out, EF_UNIQUE_ID, uid);
        let mut plain = Vec::new();
        for c in cookies {
            push_ef(&mut plain, EF_COOKIE, c);
        }
        push_authenticator(&mut out, s2c, nonce, &plain);
        out
    }

    /// An NTS NAK for the request with `uid`.
    pub fn nak(header: &[u8; HEADER_LEN], uid: &[u8; UID_LEN]) -> Vec<u8> {
        let mut h = *header;
        h[1] = 0;
        h[12..16].copy_from_slice(&KISS_NTSN);
        let mut out = h.to_vec();
        push_ef(&mut out, EF_UNIQUE_ID, uid);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::server::*;
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn aes_siv_matches_rfc_5297_a1() {
        // RFC 5297 appendix A.1 (deterministic: one header, no nonce).
        let key: [u8; 32] =
            hex("fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff")
                .try_into()
                .unwrap();
        let ad = hex("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627");
        let pt = hex("11223344 55667788 99aabbcc ddee");
        let ct = Key(key).siv().encrypt([ad.as_slice()], &pt).unwrap();
        assert_eq!(
            ct,
            hex("85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c")
        );
    }

    fn keys() -> (Key, Key) {
        (Key([1; 32]), Key([2; 32]))
    }

    fn header() -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x24;
        h[1] = 1;
        h[40..48].copy_from_slice(&7u64.to_be_bytes());
        h
    }

    #[test]
    fn a_request_is_what_a_server_reads_and_its_reply_opens() {
        let (c2s, s2c) = keys();
        let uid = [9u8; UID_LEN];
        let cookie = vec![5u8; 100];
        let req = seal_request(&header(), &uid, &cookie, 3, &c2s, &[3; NONCE_LEN]);
        // header, UID 36, cookie 104, 3 placeholders, authenticator 40.
        assert_eq!(req.len(), 48 + 36 + 104 * 4 + 40);
        assert_eq!(open_request(&req, &c2s), Some((uid, cookie.clone(), 3)));
        assert_eq!(
            open_request(&req, &s2c),
            None,
            "the wrong key must not open it"
        );
        let fresh = vec![vec![6u8; 100], vec![7u8; 100]];
        let reply = seal_reply(&header(), &uid, &fresh, &s2c, &[4; NONCE_LEN]);
        assert_eq!(
            open_reply(&reply, &uid, &s2c),
            Ok(Opened {
                cookies: fresh.clone()
            })
        );
        assert_eq!(
            open_reply(&reply, &[8; UID_LEN], &s2c),
            Err(OpenError::NotOurs)
        );
        assert_eq!(open_reply(&reply, &uid, &c2s), Err(OpenError::Forged));
        // Any changed byte of the header (a shifted timestamp, say) or of
        // the fields makes it a forgery, or not ours.
        for i in 0..reply.len() {
            let mut bad = reply.clone();
            bad[i] ^= 0x40;
            assert!(open_reply(&bad, &uid, &s2c).is_err(), "byte {i} altered");
        }
        let nak = nak(&header(), &uid);
        assert_eq!(open_reply(&nak, &uid, &s2c), Err(OpenError::Nak));
        assert_eq!(
            open_reply(&nak, &[8; UID_LEN], &s2c),
            Err(OpenError::NotOurs)
        );
        // Nothing may follow the authenticator: a field appended after it
        // is outside what it authenticates.
        let mut trailing = reply.clone();
        push_ef(&mut trailing, EF_COOKIE, &[1; 28]);
        assert_eq!(
            open_reply(&trailing, &uid, &s2c),
            Err(OpenError::NoAuthenticator)
        );
        // A plain NTP reply is not an authentic one.
        assert_eq!(open_reply(&header(), &uid, &s2c), Err(OpenError::NotOurs));
        assert_eq!(open_reply(&[0; 10], &uid, &s2c), Err(OpenError::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let (_, s2c) = keys();
            prop_assert!(open_reply(&bytes, &[0; UID_LEN], &s2c).is_err());
            let _ = fields(&bytes, 0);
        }

        /// Our own unique identifier, then arbitrary bytes: every check
        /// past the identifier meets random fields and authenticators.
        #[test]
        fn arbitrary_fields_after_our_identifier_never_open(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
            kind in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let (_, s2c) = keys();
            let uid = [9u8; UID_LEN];
            let mut p = header().to_vec();
            push_ef(&mut p, EF_UNIQUE_ID, &uid);
            let mut with_field = p.clone();
            push_ef(&mut with_field, kind, &body);
            push_ef(&mut with_field, EF_AUTHENTICATOR, &body);
            p.extend_from_slice(&tail);
            prop_assert!(open_reply(&p, &uid, &s2c).is_err());
            prop_assert!(open_reply(&with_field, &uid, &s2c).is_err());
        }

        #[test]
        fn altered_replies_never_open(i in 0usize..1000, x in 1u8..=255, cut in 0usize..200) {
            let (_, s2c) = keys();
            let uid = [9u8; UID_LEN];
            let reply = seal_reply(&header(), &uid, &[vec![6u8; 100]], &s2c, &[4; NONCE_LEN]);
            let mut bad = reply.clone();
            let n = bad.len();
            bad[i % n] ^= x;
            prop_assert!(open_reply(&bad, &uid, &s2c).is_err());
            let mut short = reply.clone();
            short.truncate(n - 1 - cut.min(n - 1));
            prop_assert!(open_reply(&short, &uid, &s2c).is_err());
        }
    }
}
