//! Remote APDU scripts in the expanded format of ETSI TS 102 226 §5.2, as GlobalPlatform Amendment B
//! (RAM over HTTP) carries them in its request and response bodies.
//!
//! A command script is `AA <len> { 22 <len> C-APDU }…` (definite length) or
//! `AE 80 { 22 <len> C-APDU }… 00 00` (indefinite length); a response script is
//! `AB <len> 80 01 <n executed> { 23 <len> data ‖ SW1 SW2 }…` or `AF 80 … 00 00`. Implementations
//! disagree whether the indefinite response starts with the `80` count, so the parser accepts both and
//! the writer answers in definite coding. The C-APDUs are whole (header, Lc, data, Le): the script adds
//! nothing to them.
//!
//! Scripts arrive over a network from parties neither side controls, so the parser is panic-free, checks
//! every length against the bytes present, refuses anything after the end of the script, and bounds the
//! script's size and its number of entries before it allocates for them.

use alloc::vec::Vec;
use core::fmt;

use crate::tlv::{read_len, write_len};

/// Largest script accepted or written, in bytes: a 64 KiB load file in 200-byte LOAD blocks with their
/// secure-messaging overhead stays far below it.
pub const MAX_SCRIPT_LEN: usize = 1 << 20;
/// Most C-APDUs or R-APDUs one script may hold.
pub const MAX_ENTRIES: usize = 4096;

/// Outer tag of a command script in definite length coding.
pub const TAG_COMMAND_DEFINITE: u8 = 0xAA;
/// Outer tag of a command script in indefinite length coding.
pub const TAG_COMMAND_INDEFINITE: u8 = 0xAE;
/// Outer tag of a response script in definite length coding.
pub const TAG_RESPONSE_DEFINITE: u8 = 0xAB;
/// Outer tag of a response script in indefinite length coding.
pub const TAG_RESPONSE_INDEFINITE: u8 = 0xAF;
/// A C-APDU inside a command script.
pub const TAG_C_APDU: u8 = 0x22;
/// An R-APDU inside a response script.
pub const TAG_R_APDU: u8 = 0x23;
/// The number of executed C-APDUs, first in a response script.
pub const TAG_EXECUTED: u8 = 0x80;
/// "Bad format" in a response script (`01` unknown tag, `02` wrong length, `03` length not found).
pub const TAG_BAD_FORMAT: u8 = 0x90;
/// Immediate action response.
pub const TAG_IMMEDIATE_ACTION: u8 = 0x81;
/// Error action response.
pub const TAG_ERROR_ACTION: u8 = 0x82;
/// Script chaining response.
pub const TAG_SCRIPT_CHAINING: u8 = 0x83;

/// How a script's outer length is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// One BER length for the whole script (`AA`/`AB`).
    Definite,
    /// `80` and an end-of-contents marker `00 00` (`AE`/`AF`), for writers that stream.
    Indefinite,
}

/// Why bytes are not a well-formed script, or a script cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptError {
    /// The script is larger than [`MAX_SCRIPT_LEN`].
    TooLarge,
    /// More than [`MAX_ENTRIES`] C-APDUs or R-APDUs.
    TooManyEntries,
    /// The input ends inside a tag, a length or a value, or before the end-of-contents marker.
    Truncated,
    /// The outer tag is not the one this kind of script uses (the byte found).
    WrongScriptTag(u8),
    /// An entry with a tag this kind of script does not hold (the byte found).
    UnexpectedTag(u8),
    /// A length that is not a valid BER definite length, or an outer length that does not match.
    BadLength,
    /// Bytes after the end of the script.
    TrailingBytes,
    /// A C-APDU shorter than its four header bytes.
    ShortCommand,
    /// An R-APDU without its two status bytes.
    ShortResponse,
    /// The executed-count object is not one or two bytes, or appears twice or late.
    BadCount,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::TooLarge => write!(f, "script larger than {MAX_SCRIPT_LEN} bytes"),
            ScriptError::TooManyEntries => write!(f, "script holds more than {MAX_ENTRIES} APDUs"),
            ScriptError::Truncated => f.write_str("script truncated"),
            ScriptError::WrongScriptTag(t) => write!(f, "script starts with tag {t:02X}"),
            ScriptError::UnexpectedTag(t) => write!(f, "unexpected tag {t:02X} in script"),
            ScriptError::BadLength => f.write_str("script length field malformed or inconsistent"),
            ScriptError::TrailingBytes => f.write_str("bytes after the end of the script"),
            ScriptError::ShortCommand => f.write_str("C-APDU shorter than its header"),
            ScriptError::ShortResponse => f.write_str("R-APDU without its status word"),
            ScriptError::BadCount => f.write_str("malformed count of executed commands"),
        }
    }
}

/// True when execution of a script continues after a command answered `sw`: success (`9000`) and
/// warnings (`62xx`, `63xx`, except `62F1`, which ends the script because the response was cut short).
/// TS 102 226 stops at the first error status and reports what ran up to and including it.
pub fn continues_after(sw: u16) -> bool {
    match sw >> 8 {
        0x90 => sw == 0x9000,
        0x62 => sw != 0x62F1,
        0x63 => true,
        _ => false,
    }
}

/// One top-level object of a script: its one-byte tag and its value.
struct Item<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Reads one object with a one-byte tag; `None` at the end-of-contents marker `00 00`.
fn read_item(bytes: &[u8]) -> Result<(Option<Item<'_>>, &[u8]), ScriptError> {
    let (&tag, rest) = bytes.split_first().ok_or(ScriptError::Truncated)?;
    if tag == 0x00 {
        let (&zero, rest) = rest.split_first().ok_or(ScriptError::Truncated)?;
        if zero != 0x00 {
            return Err(ScriptError::BadLength);
        }
        return Ok((None, rest));
    }
    let (len, rest) = read_len(rest).map_err(|e| match e {
        crate::tlv::TlvError::Truncated => ScriptError::Truncated,
        _ => ScriptError::BadLength,
    })?;
    let (value, rest) = rest.split_at_checked(len).ok_or(ScriptError::Truncated)?;
    Ok((Some(Item { tag, value }), rest))
}

/// Splits a script into its outer tag, coding and the sequence of its objects (checked to end where the
/// script ends).
fn outer(
    bytes: &[u8],
    definite: u8,
    indefinite: u8,
) -> Result<(Coding, Vec<Item<'_>>), ScriptError> {
    if bytes.len() > MAX_SCRIPT_LEN {
        return Err(ScriptError::TooLarge);
    }
    let (&tag, rest) = bytes.split_first().ok_or(ScriptError::Truncated)?;
    let mut items = Vec::new();
    if tag == definite {
        let (len, body) = read_len(rest).map_err(|e| match e {
            crate::tlv::TlvError::Truncated => ScriptError::Truncated,
            _ => ScriptError::BadLength,
        })?;
        let (body, after) = body.split_at_checked(len).ok_or(ScriptError::Truncated)?;
        let mut rest = body;
        while !rest.is_empty() {
            let (item, next) = read_item(rest)?;
            let item = item.ok_or(ScriptError::UnexpectedTag(0x00))?;
            if items.len() > MAX_ENTRIES {
                return Err(ScriptError::TooManyEntries);
            }
            items.push(item);
            rest = next;
        }
        if !after.is_empty() {
            return Err(ScriptError::TrailingBytes);
        }
        Ok((Coding::Definite, items))
    } else if tag == indefinite {
        let (&marker, mut rest) = rest.split_first().ok_or(ScriptError::Truncated)?;
        if marker != 0x80 {
            return Err(ScriptError::BadLength);
        }
        loop {
            let (item, next) = read_item(rest)?;
            rest = next;
            match item {
                None => break,
                Some(item) => {
                    if items.len() > MAX_ENTRIES {
                        return Err(ScriptError::TooManyEntries);
                    }
                    items.push(item);
                }
            }
        }
        if !rest.is_empty() {
            return Err(ScriptError::TrailingBytes);
        }
        Ok((Coding::Indefinite, items))
    } else {
        Err(ScriptError::WrongScriptTag(tag))
    }
}

/// Wraps `body` (the encoded objects) in the outer tag and coding, checking the size limit.
fn wrap(
    tag_definite: u8,
    tag_indefinite: u8,
    coding: Coding,
    body: &[u8],
) -> Result<Vec<u8>, ScriptError> {
    let mut out = Vec::with_capacity(body.len() + 6);
    match coding {
        Coding::Definite => {
            out.push(tag_definite);
            write_len(&mut out, body.len());
            out.extend_from_slice(body);
        }
        Coding::Indefinite => {
            out.extend_from_slice(&[tag_indefinite, 0x80]);
            out.extend_from_slice(body);
            out.extend_from_slice(&[0x00, 0x00]);
        }
    }
    if out.len() > MAX_SCRIPT_LEN {
        return Err(ScriptError::TooLarge);
    }
    Ok(out)
}

/// A command script: whole C-APDUs to run on the card in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandScript {
    /// The C-APDUs, each as the bytes sent to the card (header, Lc, data, Le).
    pub commands: Vec<Vec<u8>>,
}

impl CommandScript {
    /// Parses a command script in either coding. Every C-APDU has at least its four header bytes; its
    /// length fields are the card's business, as the format does not touch them.
    pub fn parse(bytes: &[u8]) -> Result<(CommandScript, Coding), ScriptError> {
        let (coding, items) = outer(bytes, TAG_COMMAND_DEFINITE, TAG_COMMAND_INDEFINITE)?;
        let mut commands = Vec::with_capacity(items.len());
        for item in items {
            if item.tag != TAG_C_APDU {
                return Err(ScriptError::UnexpectedTag(item.tag));
            }
            if item.value.len() < 4 {
                return Err(ScriptError::ShortCommand);
            }
            commands.push(item.value.to_vec());
        }
        if commands.len() > MAX_ENTRIES {
            return Err(ScriptError::TooManyEntries);
        }
        Ok((CommandScript { commands }, coding))
    }

    /// Writes the script in `coding`.
    pub fn encode(&self, coding: Coding) -> Result<Vec<u8>, ScriptError> {
        if self.commands.len() > MAX_ENTRIES {
            return Err(ScriptError::TooManyEntries);
        }
        let mut body = Vec::new();
        for c in &self.commands {
            if c.len() < 4 {
                return Err(ScriptError::ShortCommand);
            }
            if body.len() > MAX_SCRIPT_LEN {
                return Err(ScriptError::TooLarge);
            }
            body.push(TAG_C_APDU);
            write_len(&mut body, c.len());
            body.extend_from_slice(c);
        }
        wrap(TAG_COMMAND_DEFINITE, TAG_COMMAND_INDEFINITE, coding, &body)
    }
}

/// One R-APDU of a response script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptResponse {
    /// Response data (without the status word).
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub sw: u16,
}

/// A response script: what the card answered to the commands that ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseScript {
    /// The number of C-APDUs executed, when the script states it (`80`); the indefinite coding may
    /// leave it out, and then the number of R-APDUs is the count.
    pub executed: Option<u16>,
    /// The R-APDUs in order.
    pub responses: Vec<ScriptResponse>,
    /// Other response objects (`90` bad format, `81` immediate action, `82` error action, `83` script
    /// chaining) as (tag, value), in order.
    pub notices: Vec<(u8, Vec<u8>)>,
}

impl ResponseScript {
    /// Parses a response script in either coding, with or without the executed count.
    pub fn parse(bytes: &[u8]) -> Result<(ResponseScript, Coding), ScriptError> {
        let (coding, items) = outer(bytes, TAG_RESPONSE_DEFINITE, TAG_RESPONSE_INDEFINITE)?;
        let mut script = ResponseScript::default();
        for (i, item) in items.into_iter().enumerate() {
            match item.tag {
                TAG_EXECUTED => {
                    if i != 0 {
                        return Err(ScriptError::BadCount);
                    }
                    script.executed = Some(match item.value {
                        [n] => u16::from(*n),
                        [a, b] => u16::from_be_bytes([*a, *b]),
                        _ => return Err(ScriptError::BadCount),
                    });
                }
                TAG_R_APDU => {
                    let (data, sw) = item
                        .value
                        .split_last_chunk::<2>()
                        .ok_or(ScriptError::ShortResponse)?;
                    script.responses.push(ScriptResponse {
                        data: data.to_vec(),
                        sw: u16::from_be_bytes(*sw),
                    });
                }
                TAG_BAD_FORMAT | TAG_IMMEDIATE_ACTION | TAG_ERROR_ACTION | TAG_SCRIPT_CHAINING => {
                    script.notices.push((item.tag, item.value.to_vec()));
                }
                other => return Err(ScriptError::UnexpectedTag(other)),
            }
        }
        Ok((script, coding))
    }

    /// The number of commands executed: the stated count, or the number of R-APDUs.
    pub fn executed_count(&self) -> usize {
        match self.executed {
            Some(n) => usize::from(n),
            None => self.responses.len(),
        }
    }

    /// Writes the script. Definite coding always carries the count (one byte, or two above 255);
    /// indefinite coding leaves it out, which every reader accepts.
    pub fn encode(&self, coding: Coding) -> Result<Vec<u8>, ScriptError> {
        if self.responses.len() > MAX_ENTRIES {
            return Err(ScriptError::TooManyEntries);
        }
        let mut body = Vec::new();
        if coding == Coding::Definite {
            let n = self.executed.unwrap_or(self.responses.len() as u16);
            body.push(TAG_EXECUTED);
            match u8::try_from(n) {
                Ok(one) => body.extend_from_slice(&[0x01, one]),
                Err(_) => {
                    body.push(0x02);
                    body.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        for r in &self.responses {
            if body.len() > MAX_SCRIPT_LEN {
                return Err(ScriptError::TooLarge);
            }
            body.push(TAG_R_APDU);
            write_len(&mut body, r.data.len() + 2);
            body.extend_from_slice(&r.data);
            body.extend_from_slice(&r.sw.to_be_bytes());
        }
        for (tag, value) in &self.notices {
            body.push(*tag);
            write_len(&mut body, value.len());
            body.extend_from_slice(value);
        }
        wrap(
            TAG_RESPONSE_DEFINITE,
            TAG_RESPONSE_INDEFINITE,
            coding,
            &body,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::util::h;
    use alloc::vec;

    // The example scripts of REMOTE-FACTS §3 (TS 102 226 §5.2 expanded format): GET STATUS of the
    // ISD (`80F24002024F0000`) and GET DATA `FF21` (`80CAFF2100`).
    const GET_STATUS: &str = "80F24002024F0000";
    const GET_DATA: &str = "80CAFF2100";

    fn ok_response() -> ScriptResponse {
        ScriptResponse {
            data: vec![],
            sw: 0x9000,
        }
    }

    #[test]
    fn one_apdu_definite_command_and_response() {
        // TS 102 226 §5.2 via REMOTE-FACTS §3: `AA0A 2208 80F24002024F0000`, answer `AB07 800101 2302 9000`.
        let bytes = h("AA0A 2208 80F24002024F0000");
        let (script, coding) = CommandScript::parse(&bytes).unwrap();
        assert_eq!(coding, Coding::Definite);
        assert_eq!(script.commands, vec![h(GET_STATUS)]);
        assert_eq!(script.encode(Coding::Definite).unwrap(), bytes);

        let answer = h("AB07 800101 2302 9000");
        let (resp, coding) = ResponseScript::parse(&answer).unwrap();
        assert_eq!(coding, Coding::Definite);
        assert_eq!(resp.executed, Some(1));
        assert_eq!(resp.responses, vec![ok_response()]);
        assert_eq!(resp.encode(Coding::Definite).unwrap(), answer);
    }

    #[test]
    fn two_apdus_definite() {
        // REMOTE-FACTS §3: `AA11 2208 … 2205 80CAFF2100`; answer `AB0B 800102 2302 9000 2302 9000`.
        let bytes = h("AA11 2208 80F24002024F0000 2205 80CAFF2100");
        let (script, _) = CommandScript::parse(&bytes).unwrap();
        assert_eq!(script.commands, vec![h(GET_STATUS), h(GET_DATA)]);
        assert_eq!(script.encode(Coding::Definite).unwrap(), bytes);
        let answer = h("AB0B 800102 2302 9000 2302 9000");
        let (resp, _) = ResponseScript::parse(&answer).unwrap();
        assert_eq!(resp.executed_count(), 2);
        assert_eq!(resp.responses, vec![ok_response(), ok_response()]);
        assert_eq!(resp.encode(Coding::Definite).unwrap(), answer);
    }

    #[test]
    fn two_apdus_indefinite() {
        // REMOTE-FACTS §3: `AE80 2208 … 2205 80CAFF2100 0000`; answer `AF80 2302 9000 2302 9000 0000`.
        let bytes = h("AE80 2208 80F24002024F0000 2205 80CAFF2100 0000");
        let (script, coding) = CommandScript::parse(&bytes).unwrap();
        assert_eq!(coding, Coding::Indefinite);
        assert_eq!(script.commands, vec![h(GET_STATUS), h(GET_DATA)]);
        assert_eq!(script.encode(Coding::Indefinite).unwrap(), bytes);
        let answer = h("AF80 2302 9000 2302 9000 0000");
        let (resp, coding) = ResponseScript::parse(&answer).unwrap();
        assert_eq!(coding, Coding::Indefinite);
        assert_eq!(resp.executed, None);
        assert_eq!(resp.executed_count(), 2);
        assert_eq!(resp.encode(Coding::Indefinite).unwrap(), answer);
    }

    #[test]
    fn indefinite_response_with_count_is_accepted_too() {
        // REMOTE-FACTS §3: one implementation writes the `80` count in the indefinite form as well.
        let (resp, _) = ResponseScript::parse(&h("AF80 800102 2302 9000 2302 9000 0000")).unwrap();
        assert_eq!(resp.executed, Some(2));
        assert_eq!(resp.responses.len(), 2);
    }

    #[test]
    fn response_data_and_notices() {
        let (resp, _) = ResponseScript::parse(&h("AB0C 800101 2304 AABB6A88 900101")).unwrap();
        assert_eq!(
            resp.responses,
            vec![ScriptResponse {
                data: h("AABB"),
                sw: 0x6A88
            }]
        );
        assert_eq!(resp.notices, vec![(TAG_BAD_FORMAT, h("01"))]);
    }

    #[test]
    fn long_lengths_round_trip() {
        let big = vec![0x11u8; 300];
        let mut apdu = h("80E80000");
        apdu.push(0xFF);
        apdu.extend_from_slice(&big[..255]);
        let script = CommandScript {
            commands: vec![apdu.clone(); 3],
        };
        for coding in [Coding::Definite, Coding::Indefinite] {
            let bytes = script.encode(coding).unwrap();
            assert_eq!(
                CommandScript::parse(&bytes).unwrap(),
                (script.clone(), coding)
            );
        }
        let resp = ResponseScript {
            executed: Some(300),
            responses: vec![ok_response(); 300],
            notices: vec![],
        };
        let bytes = resp.encode(Coding::Definite).unwrap();
        assert_eq!(ResponseScript::parse(&bytes).unwrap().0, resp);
    }

    #[test]
    fn malformed_scripts_are_refused_precisely() {
        let cases: &[(&str, ScriptError)] = &[
            ("", ScriptError::Truncated),
            ("AB07 800101 2302 9000", ScriptError::WrongScriptTag(0xAB)),
            ("AA0B 2208 80F24002024F0000", ScriptError::Truncated),
            ("AA09 2208 80F24002024F0000", ScriptError::Truncated),
            ("AA0A 2208 80F24002024F0000 00", ScriptError::TrailingBytes),
            ("AA04 2302 9000", ScriptError::UnexpectedTag(0x23)),
            ("AA03 2201 80", ScriptError::ShortCommand),
            ("AE80 2205 80CAFF2100", ScriptError::Truncated),
            ("AE80 2205 80CAFF2100 0000 00", ScriptError::TrailingBytes),
            ("AE80 2205 80CAFF2100 0001", ScriptError::BadLength),
            ("AE81 2205 80CAFF2100 0000", ScriptError::BadLength),
            ("AA85 0000000001 22", ScriptError::BadLength),
            ("AA02 2280", ScriptError::BadLength),
        ];
        for (hex, want) in cases {
            assert_eq!(
                CommandScript::parse(&h(hex)).unwrap_err(),
                *want,
                "command script {hex}"
            );
        }
        let responses: &[(&str, ScriptError)] = &[
            ("AB03 2301 90", ScriptError::ShortResponse),
            ("AB07 2302 9000 800101", ScriptError::BadCount),
            ("AB05 800300 0000", ScriptError::BadCount),
            ("AB04 2202 9000", ScriptError::UnexpectedTag(0x22)),
        ];
        for (hex, want) in responses {
            assert_eq!(
                ResponseScript::parse(&h(hex)).unwrap_err(),
                *want,
                "response script {hex}"
            );
        }
    }

    #[test]
    fn size_limits_hold_before_allocation() {
        let too_big = vec![0u8; MAX_SCRIPT_LEN + 1];
        assert_eq!(
            CommandScript::parse(&too_big).unwrap_err(),
            ScriptError::TooLarge
        );
        let mut many = vec![TAG_COMMAND_INDEFINITE, 0x80];
        for _ in 0..=MAX_ENTRIES + 1 {
            many.extend_from_slice(&h("2204 80CA0000"));
        }
        many.extend_from_slice(&[0, 0]);
        assert_eq!(
            CommandScript::parse(&many).unwrap_err(),
            ScriptError::TooManyEntries
        );
    }

    #[test]
    fn errors_stop_execution_warnings_do_not() {
        assert!(continues_after(0x9000));
        assert!(continues_after(0x6310));
        assert!(continues_after(0x6283));
        assert!(!continues_after(0x62F1));
        assert!(!continues_after(0x6A88));
        assert!(!continues_after(0x6982));
        assert!(!continues_after(0x9001));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = CommandScript::parse(&bytes);
            let _ = ResponseScript::parse(&bytes);
        }

        #[test]
        fn response_scripts_round_trip(rs in proptest::collection::vec(
            (proptest::collection::vec(proptest::num::u8::ANY, 0..300), proptest::num::u16::ANY), 0..8)) {
            let s = ResponseScript {
                executed: Some(rs.len() as u16),
                responses: rs.into_iter().map(|(data, sw)| ScriptResponse { data, sw }).collect(),
                notices: vec![],
            };
            let bytes = s.encode(Coding::Definite).unwrap();
            proptest::prop_assert_eq!(ResponseScript::parse(&bytes).unwrap(), (s.clone(), Coding::Definite));
            // Indefinite coding leaves the count out; the R-APDUs are the count.
            let bytes = s.encode(Coding::Indefinite).unwrap();
            let (back, _) = ResponseScript::parse(&bytes).unwrap();
            proptest::prop_assert_eq!(back.executed_count(), s.responses.len());
            proptest::prop_assert_eq!(back.responses, s.responses);
        }

        #[test]
        fn command_scripts_round_trip(cmds in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 4..300), 0..8)) {
            let s = CommandScript { commands: cmds };
            for coding in [Coding::Definite, Coding::Indefinite] {
                let bytes = s.encode(coding).unwrap();
                proptest::prop_assert_eq!(CommandScript::parse(&bytes).unwrap(), (s.clone(), coding));
            }
        }
    }
}
