//! The card side of the secure channel: SCP03 (Amendment D) and SCP02 (GPC 2.3.1 Appendix E).
//!
//! State machine per GP 2.3.1 §10.2 and Amendment D §5.6: `None` → INITIALIZE UPDATE →
//! `Initiated` → EXTERNAL AUTHENTICATE → `Open`. A bad MAC or a command without the protection
//! the session requires aborts the session (`Aborted`: keys erased, every protected command
//! refused with `6982`) until a new INITIALIZE UPDATE, a SELECT, or power loss ends it. The
//! cryptography is gp-core's; this module only decides when to use it.

use alloc::boxed::Box;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::Des3Key;
use gp_core::{scp02, scp03};

use crate::error::{refuse, Error, Result};
use crate::Sw;

/// An authenticated session: which key set opened it, with which protocol, at what level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth {
    /// Key version number of the key set that authenticated the host.
    pub kvn: u8,
    /// Secure channel protocol, `02` or `03`.
    pub scp: u8,
    /// Security level byte from EXTERNAL AUTHENTICATE (`00`, `01`, `03`, `11`, `13`, `33`).
    pub level: u8,
}

/// A protocol session from gp-core.
pub(crate) enum Scp {
    /// SCP02, i = `15` or `55`.
    V02(scp02::Session),
    /// SCP03.
    V03(scp03::Session),
}

impl Scp {
    fn unwrap_command(&mut self, cmd: &CommandApdu) -> core::result::Result<CommandApdu, Sw> {
        match self {
            Scp::V02(s) => s.unwrap_command(cmd).map_err(|e| e.sw()),
            Scp::V03(s) => s.unwrap_command(cmd).map_err(|e| e.sw()),
        }
    }
    fn wrap_response(&mut self, resp: ResponseApdu) -> ResponseApdu {
        match self {
            Scp::V02(s) => s.wrap_response(resp),
            Scp::V03(s) => s.wrap_response(resp),
        }
    }
    fn verify_external_authenticate(
        &mut self,
        cmd: &CommandApdu,
        host_cryptogram: &[u8; 8],
    ) -> core::result::Result<u8, Sw> {
        match self {
            Scp::V02(s) => s
                .verify_external_authenticate(cmd, host_cryptogram)
                .map(|l| l.bits())
                .map_err(|e| e.sw()),
            Scp::V03(s) => s
                .verify_external_authenticate(cmd, host_cryptogram)
                .map(|l| l.bits())
                .map_err(|e| e.sw()),
        }
    }
    fn id(&self) -> u8 {
        match self {
            Scp::V02(_) => 0x02,
            Scp::V03(_) => 0x03,
        }
    }
}

/// A session waiting for EXTERNAL AUTHENTICATE.
pub(crate) struct Pending {
    pub session: Scp,
    pub host_cryptogram: [u8; 8],
    pub kvn: u8,
    /// The domain's "i" parameter: which levels it supports.
    pub i: u8,
}

/// An open session.
pub(crate) struct Open {
    pub session: Scp,
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

    /// SCP02 session data encryption key (PUT KEY key data is encrypted under S-DEK).
    pub fn scp02_session_dek(&self) -> Option<Des3Key> {
        match self {
            Channel::Open(open) => match &open.session {
                Scp::V02(s) => Some(s.keys().dek.clone()),
                Scp::V03(_) => None,
            },
            _ => None,
        }
    }

    /// Check and strip the secure messaging of an incoming command according to the session.
    /// Any failure aborts the session and refuses the command with the protocol's status word
    /// (`6982` for MAC and protection failures).
    pub fn unwrap_command(&mut self, cmd: CommandApdu) -> Result<CommandApdu> {
        let sm = gp_core::apdu::has_secure_messaging(cmd.cla);
        match self {
            Channel::Open(open) => match open.session.unwrap_command(&cmd) {
                Ok(plain) => Ok(plain),
                Err(sw) => {
                    *self = Channel::Aborted;
                    refuse(sw)
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
            i,
        } = *pending;
        let scp = session.id();
        // Response protection the domain's "i" does not offer is refused (Amendment D
        // Table 5-1: b6 R-MAC, b7 R-ENC support).
        if scp == 0x03 {
            let needs_rmac = cmd.p1 & 0x10 != 0;
            let needs_renc = cmd.p1 & 0x20 != 0;
            if (needs_rmac && i & 0x20 == 0) || (needs_renc && i & 0x40 == 0) {
                return refuse(Sw::INCORRECT_P1P2);
            }
        }
        match session.verify_external_authenticate(cmd, &host_cryptogram) {
            Ok(level) => {
                let auth = Auth { kvn, scp, level };
                *self = Channel::Open(Box::new(Open { session, auth }));
                Ok(auth)
            }
            Err(sw) => Err(Error::Refused(sw)),
        }
    }
}
