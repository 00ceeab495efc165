//! The HSM as the server uses it: one dedicated thread owns the PKCS#11 session, so blocking token calls
//! never run on the async executor. It derives a card's static keys from the issuer master (exactly as
//! `signer deploy` does, with the signer's derivation) and from them the SCP03 session keys; the static
//! keys never leave the token and the session keys die with the card's session.

use crate::error::Error;
use gp_core::diversify::Scheme;
use gp_core::scp03::{InitializeUpdateResponse, SessionKeys};
use keyman::hsm::{Hsm, SecretKeyType};
use keyman::ledger::Output;
use keyman::pin::PinSource;
use signer::channel::StaticKeys;
use signer::diversify::{derive_card_keys, Purpose};
use std::path::PathBuf;
use std::sync::mpsc;

struct Job {
    host_challenge: [u8; 8],
    iu: InitializeUpdateResponse,
    reply: mpsc::Sender<Result<SessionKeys, Error>>,
}

/// A handle to the HSM thread.
pub struct HsmWorker {
    jobs: mpsc::Sender<Job>,
    /// The ledger's record of the issuer master (label, id, KCV), read once at start.
    pub key_outputs: Vec<Output>,
}

impl HsmWorker {
    /// Opens the token holding `master_uri` (`pkcs11:token=…;object=…`) with the PIN from `pin`, finds
    /// the master key and starts the thread. Fails before the server listens when any of it fails.
    pub fn start(
        master_uri: &str,
        module: Option<PathBuf>,
        pin: PinSource,
        scheme: Scheme,
    ) -> Result<HsmWorker, Error> {
        let (uri, label) = signer::token::key_uri(master_uri, "issuer_master")?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Vec<Output>, Error>>();
        std::thread::Builder::new()
            .name("hsm".into())
            .spawn(move || {
                let opened = (|| -> Result<_, Error> {
                    let hsm = Hsm::for_uri(&uri, module.as_deref())?;
                    Ok(hsm)
                })();
                let hsm = match opened {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let session = match hsm.open(&uri, &pin) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let master = match session.find_secret_key(&label) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                // The token must derive this scheme's keys from this master: a token lacking the
                // mechanism is refused here, before the server listens, not at every card's session.
                if let Err(e) =
                    signer::diversify::check_master(&session, master, scheme, SecretKeyType::Aes128)
                {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
                let outputs = signer::records::token_key_output(&session, master, &label);
                let _ = ready_tx.send(Ok(outputs));
                for job in rx {
                    let result = (|| -> Result<SessionKeys, Error> {
                        let keys = derive_card_keys(
                            &session,
                            master,
                            scheme,
                            &job.iu.kdd,
                            SecretKeyType::Aes128,
                            Purpose::Channel,
                        )?;
                        let statics = StaticKeys {
                            enc: keys.enc.handle(),
                            mac: keys.mac.handle(),
                            dek: keys.dek.handle(),
                        };
                        Ok(signer::channel::session_keys(
                            &session,
                            statics,
                            &job.host_challenge,
                            &job.iu,
                        )?)
                    })();
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| Error::Io {
                what: "starting the HSM thread".into(),
                source: e,
            })?;
        let key_outputs = ready_rx
            .recv()
            .map_err(|_| Error::Usage("the HSM thread stopped while starting".into()))??;
        Ok(HsmWorker { jobs, key_outputs })
    }

    /// The SCP03 session keys of the card that answered `iu` to `host_challenge` (blocking: call it from
    /// a blocking context).
    pub fn session_keys(
        &self,
        host_challenge: [u8; 8],
        iu: InitializeUpdateResponse,
    ) -> Result<SessionKeys, Error> {
        let (reply, rx) = mpsc::channel();
        self.jobs
            .send(Job {
                host_challenge,
                iu,
                reply,
            })
            .map_err(|_| Error::Usage("the HSM thread has stopped".into()))?;
        // Timed from the job's hand-over to its answer: queueing behind other cards counts, as the
        // agent waits for it too.
        crate::ops::metrics::metrics().time_hsm("session_keys", || {
            rx.recv()
                .map_err(|_| Error::Usage("the HSM thread has stopped".into()))?
        })
    }
}
