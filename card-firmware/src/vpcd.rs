//! The vsmartcard `vpcd` protocol: plugs a [`SimCard`] into pcscd's "Virtual PCD" reader.
//!
//! The card side connects to vpcd (default `127.0.0.1:35963`). Every message is a 2-byte
//! big-endian length followed by that many bytes. A 1-byte message is a control code: `00` power
//! off, `01` power on, `02` reset, `04` get ATR (answered with the ATR); anything longer is a
//! command APDU, answered with the response APDU. Power off and reset are power loss for the card:
//! RAM state and any secure channel are gone. When pcscd goes away the connection drops and
//! [`serve`] reconnects.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::sim::SimCard;

/// Default vpcd address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:35963";

const POWER_OFF: u8 = 0x00;
const POWER_ON: u8 = 0x01;
const RESET: u8 = 0x02;
const GET_ATR: u8 = 0x04;

fn read_frame(stream: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Ok(Some(buf))
}

fn write_frame(stream: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(payload)?;
    stream.flush()
}

/// Serve one vpcd connection until the peer closes it.
pub fn serve_connection(card: &mut SimCard, stream: &mut (impl Read + Write)) -> io::Result<()> {
    let mut powered = false;
    while let Some(frame) = read_frame(stream)? {
        match frame.as_slice() {
            [POWER_OFF] => powered = false,
            [POWER_ON] | [RESET] => {
                card.power_on();
                powered = true;
            }
            [GET_ATR] => write_frame(stream, &crate::card::atr())?,
            [_] => {} // unknown control codes are ignored, as vpcd's own card does
            apdu => {
                if !powered {
                    // pcscd powers the card before sending APDUs; be tolerant of readers that
                    // do not.
                    card.power_on();
                    powered = true;
                }
                let resp = card.transmit(apdu);
                write_frame(stream, &resp)?;
            }
        }
    }
    Ok(())
}

/// Connect to vpcd at `addr` and serve forever, reconnecting when the connection drops
/// (for example when pcscd restarts). `log` receives one line per connection event.
pub fn serve(card: &mut SimCard, addr: &str, log: &mut dyn FnMut(&str)) -> io::Result<()> {
    let mut waiting_logged = false;
    loop {
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                waiting_logged = false;
                stream.set_nodelay(true)?;
                log(&format!("connected to vpcd at {addr}"));
                if let Err(e) = serve_connection(card, &mut stream) {
                    log(&format!("connection lost: {e}"));
                } else {
                    log("vpcd closed the connection");
                }
                // The reader went away: that is power loss for the card.
                card.power_on();
            }
            Err(e) => {
                if !waiting_logged {
                    log(&format!("waiting for vpcd at {addr}: {e}"));
                    waiting_logged = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
