//! The card side of the secure channel (SCP03, Amendment D).
//!
//! State machine per GP 2.3.1 §10.2 and Amendment D §5.6: `None` → INITIALIZE UPDATE →
//! `Initiated` → EXTERNAL AUTHENTICATE → `Open`. A bad MAC or a command without the protection
//! the session requires aborts the session (`Aborted`: keys erased, every protected command
//! refused with `6982`) until a new INITIALIZE UPDATE, a SELECT, or power loss ends it. The
//! cryptography is gp-core's; this module only decides when to use it.

use alloc::boxed::Box;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::scp03;

use crate::error::{refuse, Error, Result};
use crate::Sw;

/// An authenticated session: which key set opened it and at what level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth {
    /// Key version number of the key set that authenticated the host.
    pub kvn: u8,
    /// Security level byte from EXTERNAL AUTHENTICATE (`00`, `01`, `03`, `11`, `13`, `33`).
    pub level: u8,
}

/// A session waiting for EXTERNAL AUTHENTICATE.
pub(crate) struct Pending {
    pub session: scp03::Session,
    pub host_cryptogram: [u8; 8],
    pub kvn: u8,
}

/// An open session.
pub(crate) struct Open {
    pub session: scp03::Session,
    pub auth: Auth,
}

/// Secure channel state of the selected security domain. Lives in RAM only.
#[derive(Default)]
pub(crate) enum Channel {
    /// No session.
    #[default]
    None,
    /// INITIALIZE UPDATE answered; only EXTERNAL AUTHENTICATE may follow.
    Initiated(Box<Pending>),
    /// Authenticated.
    Open(Box<Open>),
    /// A security error ended the session; protected commands are refused until it is terminated.
    Aborted,
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Session keys never print.
        f.write_str(match self {
            Channel::None => "None",
            Channel::Initiated(_) => "Initiated",
            Channel::Open(_) => "Open",
            Channel::Aborted => "Aborted",
        })
    }
}

impl Channel {
    /// The authentication in force, if any.
    pub fn auth(&self) -> Option<Auth> {
        match self {
            Channel::Open(open) => Some(open.auth),
            _ => None,
        }
    }

    /// Check and strip the secure messaging of an incoming command according to the session.
    /// Any failure aborts the session and refuses the command with `6982`.
    pub fn unwrap_command(&mut self, cmd: CommandApdu) -> Result<CommandApdu> {
        let sm = gp_core::apdu::has_secure_messaging(cmd.cla);
        match self {
            Channel::Open(open) => match open.session.unwrap_command(&cmd) {
                Ok(plain) => Ok(plain),
                Err(_) => {
                    *self = Channel::Aborted;
                    refuse(Sw::SECURITY_STATUS_NOT_SATISFIED)
                }
            },
            Channel::Aborted => refuse(Sw::SECURITY_STATUS_NOT_SATISFIED),
            Channel::Initiated(_) => {
                // Anything but EXTERNAL AUTHENTICATE abandons the initiation.
                *self = Channel::None;
                if sm {
                    refuse(Sw::SECURITY_STATUS_NOT_SATISFIED)
                } else {
                    Ok(cmd)
                }
            }
            Channel::None => {
                if sm {
                    refuse(Sw::SECURITY_STATUS_NOT_SATISFIED)
                } else {
                    Ok(cmd)
                }
            }
        }
    }

    /// Protect an outgoing response according to the session (R-MAC, R-ENC).
    pub fn wrap_response(&mut self, resp: ResponseApdu) -> ResponseApdu {
        match self {
            Channel::Open(open) => open.session.wrap_response(resp),
            _ => resp,
        }
    }

    /// EXTERNAL AUTHENTICATE: verify the MAC and host cryptogram and open the session.
    /// On any failure the initiation is abandoned.
    pub fn external_authenticate(&mut self, cmd: &CommandApdu) -> Result<Auth> {
        let pending = match core::mem::take(self) {
            Channel::Initiated(p) => p,
            _ => return refuse(Sw::CONDITIONS_NOT_SATISFIED),
        };
        let Pending {
            mut session,
            host_cryptogram,
            kvn,
        } = *pending;
        match session.verify_external_authenticate(cmd, &host_cryptogram) {
            Ok(level) => {
                let auth = Auth {
                    kvn,
                    level: level.bits(),
                };
                *self = Channel::Open(Box::new(Open { session, auth }));
                Ok(auth)
            }
            Err(e) => Err(Error::Refused(e.sw())),
        }
    }
}
