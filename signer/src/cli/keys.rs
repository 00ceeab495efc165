//! `signer keys`: per-card keys derived inside the token.

use clap::Subcommand;
use gp_core::diversify::Scheme;
use keyman::hsm::SecretKeyType;
use signer::diversify::{derive_card_keys, Purpose};
use signer::token::{key_uri, TokenAccess};
use signer::Error;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Derive a card's ENC, MAC and DEK inside the token and print their check values (never the keys).
    Derive {
        /// The master key: pkcs11:token=LABEL;object=KEY-LABEL.
        #[arg(long)]
        master: String,
        /// Scheme: emv, visa2 (3DES master), aes (AES master), kdf3 (needs an SP 800-108 KDF).
        #[arg(long)]
        scheme: Scheme,
        /// The card's key diversification data (10 bytes, hex).
        #[arg(long)]
        kdd: String,
        /// Type of the derived keys: des3, aes128, aes192, aes256 (default: des3 for emv/visa2, the
        /// master's type for aes).
        #[arg(long)]
        key_type: Option<String>,
        #[command(flatten)]
        token: TokenAccess,
    },
}

pub fn keys_derive(
    master: &str,
    scheme: Scheme,
    kdd: &str,
    key_type: Option<&str>,
    token: &TokenAccess,
    dry: bool,
) -> Result<(), Error> {
    let kdd = signer::cards::parse_kdd(kdd).map_err(|p| Error::Usage(format!("--kdd: {p}")))?;
    let (uri, label) = key_uri(master, "--master")?;
    let requested = match key_type {
        None => None,
        Some("des3") => Some(SecretKeyType::Des3TwoKey),
        Some("aes128") => Some(SecretKeyType::Aes128),
        Some("aes192") => Some(SecretKeyType::Aes192),
        Some("aes256") => Some(SecretKeyType::Aes256),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--key-type '{other}' is not des3, aes128, aes192 or aes256"
            )))
        }
    };
    if dry {
        println!("would open token {uri} and find secret key '{label}'");
        println!(
            "would derive ENC, MAC, DEK for KDD {} with scheme {scheme} as session objects",
            hex::encode_upper(kdd)
        );
        println!("would print their KCVs with the method; no key leaves the token");
        return Ok(());
    }
    token.with_session(&uri, |session| {
        let master_key = session.find_secret_key(&label)?;
        let out = requested.unwrap_or(match scheme {
            Scheme::Emv | Scheme::Visa2 => SecretKeyType::Des3TwoKey,
            _ => master_key.key_type().unwrap_or(SecretKeyType::Aes128),
        });
        let keys = derive_card_keys(session, master_key, scheme, &kdd, out, Purpose::Check)?;
        let master_type = master_key
            .key_type()
            .map_or("unknown type", SecretKeyType::name);
        match session.kcv(master_key) {
            Ok(k) => println!("master        {label} ({master_type}), KCV {k}"),
            Err(_) => println!("master        {label} ({master_type})"),
        }
        println!("scheme        {scheme}");
        println!(
            "mechanism     {}",
            signer::diversify::derivation_mechanisms(session, scheme)?
        );
        println!("KDD           {}", hex::encode_upper(kdd));
        println!("key type      {}", out.name());
        for (name, key) in [("ENC", &keys.enc), ("MAC", &keys.mac), ("DEK", &keys.dek)] {
            println!("{name} KCV       {}", session.kcv(key.handle())?);
        }
        println!(
            "derived inside token '{}' as session objects, destroyed after use",
            session.label()
        );
        Ok(())
    })
}
