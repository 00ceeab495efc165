//! EXTERNAL AUTHENTICATE (GP 2.3.1 §E.5.2, Amendment D §7.1.2): the state changes around the
//! host cryptogram check, which the secure channel ([`crate::channel`]) does.
//!
//! The pipeline commits each step on its own: the attempt is counted as failed, durably, before
//! the cryptogram is looked at (so cutting power during the check cannot buy unlimited guesses),
//! and the count is cleared only after it verified.

use crate::aid::Aid;
use crate::channel::Auth;
use crate::state::CardState;

/// Step 1: one more failed authentication for domain `sd`.
pub(crate) fn count_attempt(state: &mut CardState, sd: &Aid) {
    if let Some(domain) = state.domain_mut(sd) {
        domain.failed_auth = domain.failed_auth.saturating_add(1);
    }
}

/// Step 2, after the host cryptogram verified: the count is cleared; SCP02 counts the opened
/// session (GPC E.1.2: the counter moves when the first C-MAC verifies).
pub(crate) fn authenticated(state: &mut CardState, sd: &Aid, auth: Auth) {
    if let Some(domain) = state.domain_mut(sd) {
        domain.failed_auth = 0;
        if auth.scp == 0x02 {
            if let Some(set) = domain.set_mut(auth.kvn) {
                set.sequence_counter = set.sequence_counter.saturating_add(1);
            }
        }
    }
}
