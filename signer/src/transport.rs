//! How APDUs reach a card: in-process to a simulated card image, or through PC/SC to a reader.
//!
//! Everything above this module speaks typed APDUs; this module owns the ISO 7816-4 transport rules that
//! sit under them (`61xx` → GET RESPONSE, `6Cxx` → resend with the right Le) so no caller handles them.

use crate::error::Error;
use card_firmware::sim::SimCard;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use std::path::PathBuf;
use std::str::FromStr;

/// Which card to talk to: `sim:PATH` (a card-sim image, in-process) or `pcsc:READER` (a PC/SC reader name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardRef {
    /// A simulated card image file.
    Sim(PathBuf),
    /// A PC/SC reader, by name (or a unique part of it).
    Pcsc(String),
}

impl FromStr for CardRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(p) = s.strip_prefix("sim:").filter(|p| !p.is_empty()) {
            Ok(CardRef::Sim(PathBuf::from(p)))
        } else if let Some(r) = s.strip_prefix("pcsc:").filter(|r| !r.is_empty()) {
            Ok(CardRef::Pcsc(r.to_string()))
        } else {
            Err(Error::Usage(format!(
                "bad card '{s}': use sim:IMAGE-PATH or pcsc:READER-NAME"
            )))
        }
    }
}

impl std::fmt::Display for CardRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardRef::Sim(p) => write!(f, "sim:{}", p.display()),
            CardRef::Pcsc(r) => write!(f, "pcsc:{r}"),
        }
    }
}

/// A connection that moves raw APDU bytes to a card and back.
pub trait Transport {
    /// Sends one command APDU and returns the raw response (data ‖ SW1 SW2).
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error>;

    /// Sends a typed command and returns the typed response, following `61xx` and `6Cxx`.
    fn send(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, Error> {
        let mut raw = self.transmit_raw(&cmd.to_bytes())?;
        let mut resp = ResponseApdu::parse(&raw)
            .map_err(|e| Error::Card(format!("malformed response: {e}")))?;
        if resp.sw >> 8 == 0x6C {
            let mut again = cmd.clone();
            again.le = Some(match resp.sw & 0xFF {
                0 => 256,
                n => usize::from(n as u8),
            });
            raw = self.transmit_raw(&again.to_bytes())?;
            resp = ResponseApdu::parse(&raw)
                .map_err(|e| Error::Card(format!("malformed response: {e}")))?;
        }
        let mut data = std::mem::take(&mut resp.data);
        let mut rounds = 0;
        while resp.sw >> 8 == 0x61 {
            rounds += 1;
            if rounds > 256 {
                return Err(Error::Card("the card keeps answering 61xx".into()));
            }
            let le = match resp.sw & 0xFF {
                0 => 256,
                n => usize::from(n as u8),
            };
            let get = CommandApdu {
                cla: cmd.cla & 0x03,
                ins: 0xC0,
                p1: 0,
                p2: 0,
                data: Vec::new(),
                le: Some(le),
            };
            raw = self.transmit_raw(&get.to_bytes())?;
            resp = ResponseApdu::parse(&raw)
                .map_err(|e| Error::Card(format!("malformed response: {e}")))?;
            data.append(&mut resp.data);
        }
        resp.data = data;
        Ok(resp)
    }
}

/// A simulated card, driven in-process.
pub struct SimTransport {
    card: SimCard,
}

impl SimTransport {
    /// Opens the image and powers the card on.
    pub fn open(path: &std::path::Path) -> Result<SimTransport, Error> {
        let mut card =
            SimCard::open(path).map_err(|e| Error::Card(format!("{}: {e}", path.display())))?;
        card.power_on();
        Ok(SimTransport { card })
    }
}

impl Transport for SimTransport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.card.transmit(apdu))
    }
}

/// A card in a PC/SC reader (through pcscd), for real readers and for the simulator behind vpcd.
pub struct PcscTransport {
    card: pcsc::Card,
    reader: String,
}

impl PcscTransport {
    /// Connects to the card in the reader whose name is `wanted` or contains it (exactly one must match).
    pub fn open(wanted: &str) -> Result<PcscTransport, Error> {
        let pcsc_err = |what: &str, e: pcsc::Error| Error::Card(format!("PC/SC {what}: {e}"));
        let ctx = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(|e| pcsc_err("(is pcscd running?)", e))?;
        let names: Vec<std::ffi::CString> = match ctx.list_readers_owned() {
            Ok(n) => n,
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(pcsc_err("reader list", e)),
        };
        let readable: Vec<String> = names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        let exact = readable.iter().position(|r| r == wanted);
        let matching: Vec<usize> = match exact {
            Some(i) => vec![i],
            None => readable
                .iter()
                .enumerate()
                .filter(|(_, r)| r.contains(wanted))
                .map(|(i, _)| i)
                .collect(),
        };
        let index = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::Card(format!(
                    "no PC/SC reader matches '{wanted}' (readers: {})",
                    if readable.is_empty() {
                        "none".to_string()
                    } else {
                        readable.join(", ")
                    }
                )))
            }
            more => {
                return Err(Error::Card(format!(
                    "{} PC/SC readers match '{wanted}'; give more of the name",
                    more.len()
                )))
            }
        };
        let (Some(name), Some(reader)) = (names.get(index), readable.get(index)) else {
            return Err(Error::Card("the reader list changed".into()));
        };
        let card = ctx
            .connect(name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(|e| pcsc_err(&format!("connect to '{reader}'"), e))?;
        Ok(PcscTransport {
            card,
            reader: reader.clone(),
        })
    }

    /// The reader's full name.
    pub fn reader(&self) -> &str {
        &self.reader
    }
}

impl Transport for PcscTransport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let resp = self
            .card
            .transmit(apdu, &mut buf)
            .map_err(|e| Error::Card(format!("PC/SC transmit on '{}': {e}", self.reader)))?;
        Ok(resp.to_vec())
    }
}

/// Connects to the card a [`CardRef`] names.
pub fn connect(card: &CardRef) -> Result<Box<dyn Transport>, Error> {
    match card {
        CardRef::Sim(path) => Ok(Box::new(SimTransport::open(path)?)),
        CardRef::Pcsc(reader) => Ok(Box::new(PcscTransport::open(reader)?)),
    }
}
