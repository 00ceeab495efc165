//! Ledger anchors kept in the token: private `CKO_DATA` token objects holding a ledger's head
//! ([`crate::ledger::anchor`] says why and in what form).
//!
//! Two ways in: the methods on [`TokenSession`] for `keyman ledger init|anchor|verify`, and
//! [`AnchorSession`] for tools that append to a ledger during a run (`signer`): a session of its own on
//! the run's token, opened and logged in before the run does anything, so a ledger that does not match
//! its anchor stops the run before a card is touched. PKCS#11 gives every session of an application the
//! same login state, so the run's own session finds the token logged in and asks for no PIN again
//! ([`Hsm::open`]), and this session stays logged in while it is open, even after the run's session has
//! closed (an abort record after a failed step still moves the anchor).

use super::{Hsm, TokenSession, TokenUri};
use crate::error::Error;
use crate::ledger::anchor::{Head, ANCHOR_APPLICATION};
use crate::pin::PinSource;
use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};

fn template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Application(ANCHOR_APPLICATION.as_bytes().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Every anchor object labelled `label` with its head. Normally one; two only when an update stopped
/// between making the new object and destroying the old one (only a logged-in user can make them).
fn find_all(
    session: &Session,
    token: &str,
    label: &str,
) -> Result<Vec<(ObjectHandle, Head)>, Error> {
    let mut out = Vec::new();
    for object in session.find_objects(&template(label))? {
        let attrs = session.get_attributes(object, &[AttributeType::Value])?;
        let value = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .ok_or_else(|| Error::Token(format!("ledger anchor '{label}' has no value")))?;
        let head = Head::from_value(&value).map_err(|reason| Error::Key {
            token: token.into(),
            problem: format!("ledger anchor '{label}': {reason}"),
        })?;
        out.push((object, head));
    }
    Ok(out)
}

/// The anchored head: the one with the most entries when an interrupted update left two.
fn read(session: &Session, token: &str, label: &str) -> Result<Option<Head>, Error> {
    Ok(find_all(session, token, label)?
        .into_iter()
        .map(|(_, h)| h)
        .max_by_key(|h| h.entries))
}

/// The anchored head as it applies to a file whose head is `file`: after an interrupted move (two
/// objects), the one the file holds if it holds either, else the newer. Reads only.
fn read_for(
    session: &Session,
    token: &str,
    label: &str,
    file: Option<Head>,
) -> Result<Option<Head>, Error> {
    let all: Vec<Head> = find_all(session, token, label)?
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    if all.len() == 2 {
        if let Some(f) = file.filter(|f| all.contains(f)) {
            return Ok(Some(f));
        }
    }
    Ok(all.into_iter().max_by_key(|h| h.entries))
}

fn refuse_existing(session: &Session, token: &str, label: &str) -> Result<(), Error> {
    if !find_all(session, token, label)?.is_empty() {
        return Err(Error::Key {
            token: token.into(),
            problem: format!(
                "a ledger anchor '{label}' exists already: a ledger of that name was anchored before, \
                 and a new one must not take its place (choose another file name)"
            ),
        });
    }
    Ok(())
}

fn create(session: &Session, token: &str, label: &str, head: Head) -> Result<(), Error> {
    refuse_existing(session, token, label)?;
    let mut t = template(label);
    t.push(Attribute::Private(true));
    t.push(Attribute::Value(head.to_value().to_vec()));
    create_object(session, token, &t)
}

/// `C_CreateObject` of an anchor, with the one refusal an operator can act on made plain: some tokens
/// (NSS softokn among them) keep no private token data objects at all.
fn create_object(session: &Session, token: &str, template: &[Attribute]) -> Result<(), Error> {
    match session.create_object(template) {
        Ok(_) => Ok(()),
        Err(cryptoki::error::Error::Pkcs11(RvError::AttributeValueInvalid, _)) => Err(Error::Unsupported(
            format!(
                "token '{token}' refuses private token data objects, so it cannot hold a ledger anchor \
                 (NSS softokn is such a token); anchor the ledger in a token that keeps them (SoftHSM2, \
                 most HSMs)"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Moves the anchor from `from` to `to` in one go: [`begin`], then [`finish`].
fn update(session: &Session, token: &str, label: &str, from: Head, to: Head) -> Result<(), Error> {
    begin(session, token, label, from, to)?;
    finish(session, label, to)
}

/// First half of a move: checks that the anchor holds `from`, then makes a second object holding `to`.
/// Tokens may refuse to change a data object's value (SoftHSM2 does), so a move is always a new object
/// and then the old one destroyed ([`finish`]). Between the two halves the ledger file is written: the
/// file is the commit point, and an interruption anywhere leaves the two heads, one of which the file
/// holds ([`settle`]).
fn begin(session: &Session, token: &str, label: &str, from: Head, to: Head) -> Result<(), Error> {
    let old = find_all(session, token, label)?;
    if old.len() != 1 || old.first().map(|(_, h)| *h) != Some(from) {
        return Err(Error::Key {
            token: token.into(),
            problem: format!(
                "the ledger anchor '{label}' does not hold the head this run started from \
                 (another writer?); nothing was updated"
            ),
        });
    }
    let mut t = template(label);
    t.push(Attribute::Private(true));
    t.push(Attribute::Value(to.to_value().to_vec()));
    create_object(session, token, &t)
}

/// Second half of a move (or its undo): destroys every anchor object of `label` that does not hold
/// `keep`.
fn finish(session: &Session, label: &str, keep: Head) -> Result<(), Error> {
    for (object, head) in find_all(session, "", label)? {
        if head != keep {
            session.destroy_object(object)?;
        }
    }
    Ok(())
}

/// After an interrupted move (two anchor objects, the heads before and after), keeps the one the ledger
/// file holds (`file`: the file write is the commit point) and destroys the other. With one object, or
/// when the file holds neither, nothing changes and the mismatch is left for the check to report.
fn settle(session: &Session, token: &str, label: &str, file: Head) -> Result<(), Error> {
    let all = find_all(session, token, label)?;
    if all.len() == 2 && all.iter().any(|(_, h)| *h == file) {
        finish(session, label, file)?;
    }
    Ok(())
}

impl TokenSession<'_> {
    /// The head anchored under `label`, or `None` when this token holds no such anchor.
    pub fn ledger_anchor(&self, label: &str) -> Result<Option<Head>, Error> {
        read(&self.session, &self.label, label)
    }

    /// The head anchored under `label` as it applies to a ledger file whose head is `file` (an
    /// interrupted append leaves the heads before and after; the file says which one was committed).
    /// Reads only: a verifier changes nothing.
    pub fn ledger_anchor_for(
        &self,
        label: &str,
        file: Option<Head>,
    ) -> Result<Option<Head>, Error> {
        read_for(&self.session, &self.label, label, file)
    }

    /// Creates the anchor `label` holding `head`; refuses when one exists (a ledger's anchor is never
    /// replaced, or deleting a ledger and starting another of the same name would go unseen).
    pub fn create_ledger_anchor(&self, label: &str, head: Head) -> Result<(), Error> {
        create(&self.session, &self.label, label, head)
    }

    /// Fails when the anchor `label` exists: checked before a new ledger file is made.
    pub fn refuse_existing_ledger_anchor(&self, label: &str) -> Result<(), Error> {
        refuse_existing(&self.session, &self.label, label)
    }

    /// Moves the anchor `label` from `from` to `to`, refusing when it does not hold `from`.
    pub fn update_ledger_anchor(&self, label: &str, from: Head, to: Head) -> Result<(), Error> {
        update(&self.session, &self.label, label, from, to)
    }
}

/// A session kept open for a run's ledger anchor; see the module notes for why it needs no PIN.
pub struct AnchorSession {
    session: Session,
    token: String,
    _hsm: Hsm,
}

impl Hsm {
    /// Opens and logs in a session on the token `uri` names, kept for its ledger anchors.
    pub fn open_anchor_session(
        &self,
        uri: &TokenUri,
        pin: &PinSource,
    ) -> Result<AnchorSession, Error> {
        let TokenSession { session, label, .. } = self.open(uri, pin)?;
        Ok(AnchorSession {
            session,
            token: label,
            _hsm: self.clone(),
        })
    }
}

impl AnchorSession {
    /// The token's label, for messages.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn logged_in(&self) -> Result<&Session, Error> {
        match self.session.get_session_info()?.session_state() {
            SessionState::RwUser => Ok(&self.session),
            _ => Err(Error::Key {
                token: self.token.clone(),
                problem: "the session for the ledger anchor is no longer logged in; nothing was appended \
                          to the ledger"
                    .into(),
            }),
        }
    }

    /// The head anchored under `label`, or `None`.
    pub fn read(&self, label: &str) -> Result<Option<Head>, Error> {
        read(self.logged_in()?, &self.token, label)
    }

    /// First half of an append: the anchor `label` must hold `from`; a second object holding `to` is
    /// made. The ledger file is written next, then [`AnchorSession::finish`].
    pub fn begin(&self, label: &str, from: Head, to: Head) -> Result<(), Error> {
        begin(self.logged_in()?, &self.token, label, from, to)
    }

    /// Second half of an append (`keep` = the new head), or its undo when the file write failed
    /// (`keep` = the old head): destroys the anchor objects that do not hold `keep`.
    pub fn finish(&self, label: &str, keep: Head) -> Result<(), Error> {
        finish(self.logged_in()?, label, keep)
    }

    /// Completes or undoes an append that a crash interrupted, by the head the file holds.
    pub fn settle(&self, label: &str, file: Head) -> Result<(), Error> {
        settle(self.logged_in()?, &self.token, label, file)
    }
}
