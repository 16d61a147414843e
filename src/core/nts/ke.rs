//! NTS Key Establishment records (RFC 8915 section 4): the client's request
//! and a decoder for the server's response, plus the TLS exporter label and
//! contexts the shell derives the two AEAD keys with. Sans-IO: the shell
//! runs TLS 1.3 (ALPN `ntske/1`), writes [`request`], feeds every byte it
//! reads to [`decode_response`] until it returns a response, and exports
//! the keys with [`EXPORTER_LABEL`] and [`exporter_context`].
//!
//! A record is `C|type (16 bits, C the critical bit) | body length (16) |
//! body`. The decoder never panics on any input; every refusal is a
//! precise [`KeError`].

use thiserror::Error;

/// ALPN protocol id of NTS-KE.
pub const ALPN: &[u8] = b"ntske/1";
/// The TLS exporter label (RFC 8915 section 5.1).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";
/// NTS next protocol: NTPv4.
pub const PROTOCOL_NTPV4: u16 = 0;
/// AEAD_AES_SIV_CMAC_256 (RFC 5297), the one algorithm skewd speaks.
pub const AEAD_AES_SIV_CMAC_256: u16 = 15;
/// Key length of AEAD_AES_SIV_CMAC_256, each direction.
pub const KEY_LEN: usize = 32;
/// The default NTS-KE port.
pub const DEFAULT_KE_PORT: u16 = 4460;
/// The NTP port when the server names none.
pub const DEFAULT_NTP_PORT: u16 = 123;
/// The most bytes a response may take: a server sending more is refused
/// (eight cookies of a few hundred bytes fit many times over).
pub const MAX_RESPONSE_LEN: usize = 8_192;
/// The longest cookie kept (chronyd's are about 100 bytes; RFC 8915 sets
/// no limit, this keeps one request's cookies within a datagram).
pub const MAX_COOKIE_LEN: usize = 256;
/// At most this many cookies are kept from a response.
pub const MAX_COOKIES: usize = 8;

/// Record types.
mod rt {
    pub const END_OF_MESSAGE: u16 = 0;
    pub const NEXT_PROTOCOL: u16 = 1;
    pub const ERROR: u16 = 2;
    pub const WARNING: u16 = 3;
    pub const AEAD: u16 = 4;
    pub const NEW_COOKIE: u16 = 5;
    pub const SERVER: u16 = 6;
    pub const PORT: u16 = 7;
}

const CRITICAL: u16 = 0x8000;

/// Which way a key protects packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (requests).
    C2s,
    /// Server to client (replies).
    S2c,
}

/// The exporter context for `aead`'s key in direction `dir`: protocol id
/// (NTPv4, 0), AEAD id, then 0 for client-to-server or 1 for
/// server-to-client (RFC 8915 section 5.1).
pub fn exporter_context(aead: u16, dir: Direction) -> [u8; 5] {
    let [a, b] = aead.to_be_bytes();
    let [p, q] = PROTOCOL_NTPV4.to_be_bytes();
    [
        p,
        q,
        a,
        b,
        match dir {
            Direction::C2s => 0,
            Direction::S2c => 1,
        },
    ]
}

fn record(out: &mut Vec<u8>, critical: bool, kind: u16, body: &[u8]) {
    let t = kind | if critical { CRITICAL } else { 0 };
    out.extend_from_slice(&t.to_be_bytes());
    // Bodies here are a few bytes: the length always fits.
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// The client's request: next protocol NTPv4, AEAD_AES_SIV_CMAC_256, end
/// of message (all critical).
pub fn request() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    record(
        &mut out,
        true,
        rt::NEXT_PROTOCOL,
        &PROTOCOL_NTPV4.to_be_bytes(),
    );
    record(
        &mut out,
        true,
        rt::AEAD,
        &AEAD_AES_SIV_CMAC_256.to_be_bytes(),
    );
    record(&mut out, true, rt::END_OF_MESSAGE, &[]);
    out
}

/// What a successful key exchange negotiated.
#[derive(Clone, PartialEq, Eq)]
pub struct KeResponse {
    /// The AEAD algorithm (always [`AEAD_AES_SIV_CMAC_256`]).
    pub aead: u16,
    /// The cookies, in order (at most [`MAX_COOKIES`]).
    pub cookies: Vec<Vec<u8>>,
    /// The NTP server to ask, if the server named one (else the KE host).
    pub server: Option<String>,
    /// The NTP port, if the server named one (else 123).
    pub port: Option<u16>,
    /// Warning codes the server sent (logged, not fatal).
    pub warnings: Vec<u16>,
}

impl std::fmt::Debug for KeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cookies are bearer credentials: their number, never their bytes.
        f.debug_struct("KeResponse")
            .field("aead", &self.aead)
            .field("cookies", &self.cookies.len())
            .field("server", &self.server)
            .field("port", &self.port)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Why a key-exchange response is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeError {
    /// The server sent an Error record (0 unrecognized critical record,
    /// 1 bad request, 2 internal server error).
    #[error("the server refused the key exchange (error code {0})")]
    ServerError(u16),
    /// A critical record of a type this client does not know.
    #[error("unknown critical record type {0}")]
    UnknownCritical(u16),
    /// A record whose body has the wrong length for its type.
    #[error("record type {kind} has a malformed body of {len} bytes")]
    BadRecord {
        /// Record type.
        kind: u16,
        /// Body length.
        len: usize,
    },
    /// A record type that may appear once appeared again.
    #[error("record type {0} appears twice")]
    Duplicate(u16),
    /// No next-protocol record, or not exactly NTPv4.
    #[error("the server did not agree to NTPv4 as the next protocol")]
    NoNtpv4,
    /// No AEAD record, or an algorithm skewd did not offer.
    #[error("the server chose AEAD algorithm {0:?}, not AES-SIV-CMAC-256 (15)")]
    BadAead(Option<u16>),
    /// No cookie came.
    #[error("the server sent no cookie")]
    NoCookies,
    /// A cookie empty or longer than [`MAX_COOKIE_LEN`].
    #[error("a cookie of {0} bytes (1..=256 accepted)")]
    BadCookie(usize),
    /// The NTP server name is empty, too long, or not printable ASCII.
    #[error("the NTP server record is not a host name or address")]
    BadServer,
    /// Port 0.
    #[error("the NTP port record is 0")]
    BadPort,
    /// More than [`MAX_RESPONSE_LEN`] bytes without an end of message.
    #[error("response longer than {MAX_RESPONSE_LEN} bytes")]
    TooLong,
    /// The connection ended before the end-of-message record.
    #[error("the connection closed before the end of the response")]
    Truncated,
}

/// Decode a response from the bytes received so far. `Ok(None)`: not
/// complete yet, read more (at end of stream, that is [`KeError::Truncated`]:
/// see [`finish`]). `Ok(Some((response, used)))`: complete, `used` bytes
/// long (bytes after it are ignored).
pub fn decode_response(buf: &[u8]) -> Result<Option<(KeResponse, usize)>, KeError> {
    let mut at = 0usize;
    let mut next_protocol: Option<bool> = None;
    let mut aead: Option<Option<u16>> = None;
    let mut cookies: Vec<Vec<u8>> = Vec::new();
    let mut server: Option<String> = None;
    let mut port: Option<u16> = None;
    let mut warnings = Vec::new();
    loop {
        let Some(head) = buf.get(at..at + 4) else {
            return incomplete(buf);
        };
        let t = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let Some(body) = buf.get(at + 4..at + 4 + len) else {
            return incomplete(buf);
        };
        at += 4 + len;
        let critical = t & CRITICAL != 0;
        let kind = t & !CRITICAL;
        let bad = || KeError::BadRecord { kind, len };
        let u16s = |b: &[u8]| -> Result<Vec<u16>, KeError> {
            if !b.len().is_multiple_of(2) {
                return Err(bad());
            }
            Ok(b.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect())
        };
        match kind {
            rt::END_OF_MESSAGE => {
                if len != 0 {
                    return Err(bad());
                }
                break;
            }
            rt::NEXT_PROTOCOL => {
                if next_protocol.is_some() {
                    return Err(KeError::Duplicate(kind));
                }
                next_protocol = Some(u16s(body)? == [PROTOCOL_NTPV4]);
            }
            rt::ERROR => {
                let code = u16s(body)?;
                return Err(KeError::ServerError(code.first().copied().ok_or_else(bad)?));
            }
            rt::WARNING => {
                let code = u16s(body)?;
                warnings.push(code.first().copied().ok_or_else(bad)?);
            }
            rt::AEAD => {
                if aead.is_some() {
                    return Err(KeError::Duplicate(kind));
                }
                let algs = u16s(body)?;
                aead = Some(match algs.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                });
            }
            rt::NEW_COOKIE => {
                if body.is_empty() || body.len() > MAX_COOKIE_LEN {
                    return Err(KeError::BadCookie(body.len()));
                }
                if cookies.len() < MAX_COOKIES {
                    cookies.push(body.to_vec());
                }
            }
            rt::SERVER => {
                if server.is_some() {
                    return Err(KeError::Duplicate(kind));
                }
                let ok = !body.is_empty()
                    && body.len() <= 255
                    && body.iter().all(|c| c.is_ascii_graphic());
                if !ok {
                    return Err(KeError::BadServer);
                }
                server = Some(String::from_utf8_lossy(body).into_owned());
            }
            rt::PORT => {
                if port.is_some() {
                    return Err(KeError::Duplicate(kind));
                }
                match u16s(body)?.as_slice() {
                    [0] => return Err(KeError::BadPort),
                    [p] => port = Some(*p),
                    _ => return Err(bad()),
                }
            }
            other if critical => return Err(KeError::UnknownCritical(other)),
            _ => {} // unknown and not critical: ignored (RFC 8915 4.1)
        }
    }
    if next_protocol != Some(true) {
        return Err(KeError::NoNtpv4);
    }
    match aead {
        Some(Some(AEAD_AES_SIV_CMAC_256)) => {}
        Some(a) => return Err(KeError::BadAead(a)),
        None => return Err(KeError::BadAead(None)),
    }
    if cookies.is_empty() {
        return Err(KeError::NoCookies);
    }
    Ok(Some((
        KeResponse {
            aead: AEAD_AES_SIV_CMAC_256,
            cookies,
            server,
            port,
            warnings,
        },
        at,
    )))
}

fn incomplete(buf: &[u8]) -> Result<Option<(KeResponse, usize)>, KeError> {
    if buf.len() > MAX_RESPONSE_LEN {
        Err(KeError::TooLong)
    } else {
        Ok(None)
    }
}

/// The response in everything received up to the end of the stream.
pub fn finish(buf: &[u8]) -> Result<KeResponse, KeError> {
    decode_response(buf)?
        .map(|(r, _)| r)
        .ok_or(KeError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(critical: bool, kind: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        record(&mut v, critical, kind, body);
        v
    }

    fn good() -> Vec<u8> {
        [
            rec(true, rt::NEXT_PROTOCOL, &[0, 0]),
            rec(true, rt::AEAD, &[0, 15]),
            rec(false, rt::NEW_COOKIE, b"cookie-one"),
            rec(false, rt::NEW_COOKIE, b"cookie-two"),
            rec(false, rt::SERVER, b"127.0.0.150"),
            rec(false, rt::PORT, &12123u16.to_be_bytes()),
            rec(false, 0x1234, b"ignored"),
            rec(true, rt::END_OF_MESSAGE, &[]),
        ]
        .concat()
    }

    #[test]
    fn request_bytes() {
        // RFC 8915 figure: 8001 0002 0000, 8004 0002 000f, 8000 0000.
        assert_eq!(
            request(),
            [0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0]
        );
        assert_eq!(exporter_context(15, Direction::C2s), [0, 0, 0, 15, 0]);
        assert_eq!(exporter_context(15, Direction::S2c), [0, 0, 0, 15, 1]);
    }

    #[test]
    fn a_complete_response_decodes_and_every_prefix_asks_for_more() {
        let b = good();
        let (r, used) = decode_response(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(r.cookies, [b"cookie-one".to_vec(), b"cookie-two".to_vec()]);
        assert_eq!(r.server.as_deref(), Some("127.0.0.150"));
        assert_eq!(r.port, Some(12123));
        for n in 0..b.len() {
            assert_eq!(decode_response(&b[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(finish(&b[..b.len() - 1]), Err(KeError::Truncated));
        // Without server and port records, both are the defaults' to fill.
        let plain = [
            rec(true, rt::NEXT_PROTOCOL, &[0, 0]),
            rec(true, rt::AEAD, &[0, 15]),
            rec(false, rt::NEW_COOKIE, b"c"),
            rec(true, rt::END_OF_MESSAGE, &[]),
        ]
        .concat();
        let r = finish(&plain).unwrap();
        assert_eq!((r.server, r.port), (None, None));
    }

    #[test]
    fn refusals_are_precise() {
        let base = |extra: Vec<u8>, aead: &[u8], proto: &[u8]| {
            [
                rec(true, rt::NEXT_PROTOCOL, proto),
                rec(true, rt::AEAD, aead),
                extra,
                rec(true, rt::END_OF_MESSAGE, &[]),
            ]
            .concat()
        };
        let cookie = || rec(false, rt::NEW_COOKIE, b"c");
        assert_eq!(
            finish(&base(rec(true, rt::ERROR, &[0, 1]), &[0, 15], &[0, 0])),
            Err(KeError::ServerError(1))
        );
        assert_eq!(
            finish(&base(cookie(), &[0, 16], &[0, 0])),
            Err(KeError::BadAead(Some(16)))
        );
        assert_eq!(
            finish(&base(cookie(), &[0, 15, 0, 16], &[0, 0])),
            Err(KeError::BadAead(None))
        );
        assert_eq!(
            finish(&base(cookie(), &[0, 15], &[0, 1])),
            Err(KeError::NoNtpv4)
        );
        assert_eq!(
            finish(&base(cookie(), &[0, 15], &[])),
            Err(KeError::NoNtpv4)
        );
        assert_eq!(
            finish(&base(vec![], &[0, 15], &[0, 0])),
            Err(KeError::NoCookies)
        );
        assert_eq!(
            finish(&base(rec(true, 0x4321, b""), &[0, 15], &[0, 0])),
            Err(KeError::UnknownCritical(0x4321))
        );
        assert_eq!(
            finish(&base(rec(false, rt::PORT, &[0, 0]), &[0, 15], &[0, 0])),
            Err(KeError::BadPort)
        );
        assert_eq!(
            finish(&base(rec(false, rt::SERVER, b"a b"), &[0, 15], &[0, 0])),
            Err(KeError::BadServer)
        );
        assert_eq!(
            finish(&base(
                rec(false, rt::NEW_COOKIE, &[7; 257]),
                &[0, 15],
                &[0, 0]
            )),
            Err(KeError::BadCookie(257))
        );
        assert_eq!(
            finish(&base(rec(true, rt::AEAD, &[0, 15]), &[0, 15], &[0, 0])),
            Err(KeError::Duplicate(rt::AEAD))
        );
        let endless = rec(false, rt::WARNING, &[0, 1]).repeat(MAX_RESPONSE_LEN / 6 + 2);
        assert_eq!(decode_response(&endless), Err(KeError::TooLong));
    }

    #[test]
    fn at_most_eight_cookies_are_kept() {
        let many: Vec<u8> = [
            rec(true, rt::NEXT_PROTOCOL, &[0, 0]),
            rec(true, rt::AEAD, &[0, 15]),
            rec(false, rt::NEW_COOKIE, b"c").repeat(20),
            rec(true, rt::END_OF_MESSAGE, &[]),
        ]
        .concat();
        assert_eq!(finish(&many).unwrap().cookies.len(), MAX_COOKIES);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_response(&bytes);
            let _ = finish(&bytes);
        }

        #[test]
        fn mutated_responses_never_panic(i in 0usize..80, x: u8, cut in 0usize..80) {
            let mut b = good();
            let n = b.len();
            b[i % n] ^= x;
            b.truncate(n - cut.min(n));
            if let Ok(Some((r, used))) = decode_response(&b) {
                prop_assert!(used <= b.len());
                prop_assert!(!r.cookies.is_empty() && r.cookies.len() <= MAX_COOKIES);
                prop_assert_eq!(r.aead, AEAD_AES_SIV_CMAC_256);
            }
        }
    }
}
