//! GlobalPlatform Amendment B (Remote Application Management over HTTP) as types: the headers, the
//! media types, the script statuses and the targeted-application URI. Both the server and the agent use
//! these, so they cannot disagree on a spelling.

use crate::error::Error;

/// The protocol version string both sides send in `X-Admin-Protocol` (Amendment B §3).
pub const PROTOCOL: &str = "globalplatform-remote-admin/1.0";
/// Header naming the protocol.
pub const X_ADMIN_PROTOCOL: &str = "x-admin-protocol";
/// Header naming the agent (SGP.02 form `//se-id/eid/<EID>;//aa-id/aid/<RID>/<PIX>`, or any id).
pub const X_ADMIN_FROM: &str = "x-admin-from";
/// Header in the server's answer: where the agent POSTs the results of the script.
pub const X_ADMIN_NEXT_URI: &str = "x-admin-next-uri";
/// Header in the agent's request: how the script went.
pub const X_ADMIN_SCRIPT_STATUS: &str = "x-admin-script-status";
/// Header in the agent's request after an interruption: `true` when it repeats its last request.
pub const X_ADMIN_RESUME: &str = "x-admin-resume";
/// Header in the server's answer naming the security domain a script is for, when it is not the one
/// the session belongs to.
pub const X_ADMIN_TARGETED_APPLICATION: &str = "x-admin-targeted-application";
/// Media type of a command script (server to agent).
pub const COMMAND_MEDIA_TYPE: &str = "application/vnd.globalplatform.card-content-mgt;version=1.0";
/// Media type of a response script (agent to server).
pub const RESPONSE_MEDIA_TYPE: &str =
    "application/vnd.globalplatform.card-content-mgt-response;version=1.0";

/// Largest agent id accepted in `X-Admin-From`.
pub const MAX_AGENT_ID: usize = 256;

/// The agent's verdict on a script (`X-Admin-Script-Status`); only [`ScriptStatus::Ok`] carries a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptStatus {
    /// The script ran (possibly stopping at an error status); the body is the response script.
    Ok,
    /// The targeted application is not on the card.
    UnknownApplication,
    /// The targeted application is not a security domain.
    NotASecurityDomain,
    /// The card refused the script for security reasons.
    SecurityError,
}

impl ScriptStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptStatus::Ok => "ok",
            ScriptStatus::UnknownApplication => "unknown-application",
            ScriptStatus::NotASecurityDomain => "not-a-security-domain",
            ScriptStatus::SecurityError => "security-error",
        }
    }

    /// Parses a header value (exact, lower case as Amendment B writes them).
    pub fn parse(s: &str) -> Result<ScriptStatus, Error> {
        match s {
            "ok" => Ok(ScriptStatus::Ok),
            "unknown-application" => Ok(ScriptStatus::UnknownApplication),
            "not-a-security-domain" => Ok(ScriptStatus::NotASecurityDomain),
            "security-error" => Ok(ScriptStatus::SecurityError),
            other => Err(Error::Protocol(format!(
                "unknown X-Admin-Script-Status '{}'",
                other.escape_debug()
            ))),
        }
    }
}

/// `X-Admin-Targeted-Application: //aid/<RID 5 bytes hex>/<PIX hex>` (Amendment B §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetedApplication {
    /// The AID (RID ‖ PIX), 5 to 16 bytes.
    pub aid: Vec<u8>,
}

impl TargetedApplication {
    /// The header value.
    pub fn to_header(&self) -> String {
        let (rid, pix) = self.aid.split_at(self.aid.len().min(5));
        format!(
            "//aid/{}/{}",
            hex::encode_upper(rid),
            hex::encode_upper(pix)
        )
    }

    /// Parses a header value.
    pub fn parse(s: &str) -> Result<TargetedApplication, Error> {
        let bad = || {
            Error::Protocol(format!(
                "bad X-Admin-Targeted-Application '{}'",
                s.escape_debug()
            ))
        };
        let rest = s.strip_prefix("//aid/").ok_or_else(bad)?;
        let (rid, pix) = rest.split_once('/').ok_or_else(bad)?;
        let rid = hex::decode(rid).map_err(|_| bad())?;
        let pix = hex::decode(pix).map_err(|_| bad())?;
        if rid.len() != 5 || pix.len() > 11 {
            return Err(bad());
        }
        Ok(TargetedApplication {
            aid: [rid, pix].concat(),
        })
    }
}

/// Checks an agent id: printable ASCII without spaces, 1 to [`MAX_AGENT_ID`] characters (it goes into
/// logs and the database, so nothing that could forge a log line).
pub fn check_agent_id(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_AGENT_ID || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Protocol(format!(
            "X-Admin-From must be 1 to {MAX_AGENT_ID} printable characters without spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_amendment_b_spellings() {
        for (s, v) in [
            ("ok", ScriptStatus::Ok),
            ("unknown-application", ScriptStatus::UnknownApplication),
            ("not-a-security-domain", ScriptStatus::NotASecurityDomain),
            ("security-error", ScriptStatus::SecurityError),
        ] {
            assert_eq!(ScriptStatus::parse(s).unwrap(), v);
            assert_eq!(v.as_str(), s);
        }
        assert!(ScriptStatus::parse("OK").is_err());
        assert!(ScriptStatus::parse("").is_err());
    }

    #[test]
    fn targeted_application_rid_and_pix() {
        // Amendment B §3 form `//aid/<RID>/<PIX>`.
        let t = TargetedApplication::parse("//aid/A000000151/5350410001").unwrap();
        assert_eq!(t.aid, hex::decode("A0000001515350410001").unwrap());
        assert_eq!(t.to_header(), "//aid/A000000151/5350410001");
        for bad in [
            "//aid/A0000001/53",
            "aid/A000000151/53",
            "//aid/A000000151",
            "//aid/zz/00",
        ] {
            assert!(TargetedApplication::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_ids_are_printable() {
        assert!(check_agent_id("//se-id/eid/89049032;//aa-id/aid/A000000559/1010").is_ok());
        assert!(check_agent_id("").is_err());
        assert!(check_agent_id("a b").is_err());
        assert!(check_agent_id("a\nb").is_err());
        assert!(check_agent_id(&"x".repeat(MAX_AGENT_ID + 1)).is_err());
    }
}
