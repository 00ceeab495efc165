//! The `signer` command line: per-card keys, packages, delivery to cards, card life cycle and batches.

use clap::{Args, Parser, Subcommand};
use gp_core::diversify::Scheme;
use keyman::hsm::{Hsm, KeyHandle, SecretKeyType, TokenSession, TokenUri};
use keyman::ledger::{EntryKind, InputFile, Output};
use keyman::pin::PinSource;
use signer::cap::LfdbPolicy;
use signer::cards::CardReader;
use signer::cipher::CipherKey;
use signer::dap::{DapKey, DapKind};
use signer::diversify::{derive_card_keys, Purpose};
use signer::gp::{self, CardStateChange, LoadOptions, LoadRequest};
use signer::package::Package;
use signer::records::{self, Records};
use signer::transport::{connect, CardRef};
use signer::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Per-card keys in the HSM, signed load-file packages, and secure delivery to GlobalPlatform cards.
#[derive(Parser, Debug)]
#[command(name = "signer", version, about)]
struct Cli {
    /// Print every action that would be taken, touch no token, card or file, and stop.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a CAP or IJC file into a package: LFDB, hash, DAPs, optional ciphered LFDB, manifest.
    Package(PackageArgs),
    /// Print a package's manifest: LFDB hash, DAPs and cipher in hex.
    Inspect {
        /// The package.
        package: PathBuf,
    },
    /// Re-check a package offline: every part against the manifest, and DAPs and ciphertext with keys.
    Verify(VerifyArgs),
    /// Per-card keys derived inside the token.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Replace a fab-fresh card's transport keys with per-card issuer keys and move it to SECURED.
    Personalise {
        #[command(flatten)]
        card: CardArgs,
        /// Append a delivery record to this ledger (created if absent).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Load and install a package on a card after issuance, through the card domain.
    Deploy {
        /// The package.
        package: PathBuf,
        #[command(flatten)]
        card: CardArgs,
        /// The security domain the load file goes to (the vendor's SSD); default the card domain.
        #[arg(long)]
        sd: Option<String>,
        /// Append a delivery record to this ledger (created if absent).
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[command(flatten)]
        delegated: signer::token::DelegatedArgs,
    },
    /// Card management: registry, life cycle, key rotation.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// A vendor's security domain (SSD), through the SSD's own secure channel.
    Sd {
        #[command(subcommand)]
        command: SdCommand,
    },
    /// Delegated management: tokens signed with the issuer's key, and the card keys that check them.
    Token {
        #[command(subcommand)]
        command: signer::token::TokenCommand,
    },
    /// Applications on a card, through their security domain.
    App {
        #[command(subcommand)]
        command: signer::perso::AppCommand,
    },
    /// Personalisation batch: PUT KEY payloads for every card of a card list, wrapped in the token.
    Batch(signer::batch::BatchArgs),
}

#[derive(Subcommand, Debug)]
enum SdCommand {
    /// Put the vendor's per-card DAP key (KVN 73), load-file cipher key (KVN 74) and per-card channel key set
    /// (key set 01, replacing the transport key set) into its SSD, wrapped in the vendor's token under the
    /// SSD's current DEK.
    PutKeys(SdPutKeysArgs),
}

#[derive(Args, Debug)]
struct SdPutKeysArgs {
    /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
    #[arg(long)]
    card: CardRef,
    /// The SSD's AID (hex). Its channel opens with its transport key set (the default key), or with its
    /// per-card key set from --channel-master when the SSD reports key set 01.
    #[arg(long)]
    sd: String,
    /// The vendor's per-card DAP master: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long, requires = "diversify")]
    dap_master: Option<String>,
    /// Scheme deriving the card's DAP key from the KDD the SSD reports: aes, emv or visa2 (as `package
    /// --diversify`).
    #[arg(long, requires = "dap_master")]
    diversify: Option<Scheme>,
    /// The load-file cipher key to put as KVN 74 (same token; extractable, leaves the token only wrapped).
    #[arg(long)]
    cipher_key: Option<String>,
    /// The vendor's SSD master (same token): this card's ENC, MAC and DEK, derived from it and the KDD,
    /// replace the SSD's transport key set as key set 01 (for `deploy --tokens` and `app personalise`).
    #[arg(long, value_name = "URI")]
    channel_master: Option<String>,
    /// Key diversification scheme of --channel-master: emv, visa2 or aes (default aes).
    #[arg(long, value_name = "SCHEME", requires = "channel_master")]
    channel_scheme: Option<Scheme>,
    /// Replace KVN 73/74 when the SSD already holds them (otherwise refused before any key is sent).
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    token: TokenArgs,
    /// Append a delivery record to this ledger (created if absent).
    #[arg(long)]
    ledger: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PackageArgs {
    /// The CAP file (or .ijc: the LFDB as it is).
    input: PathBuf,
    /// Where to write the package (never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Whether the LFDB includes the Descriptor component (CAP input only).
    #[arg(long, default_value = "without-descriptor")]
    lfdb: LfdbPolicy,
    /// LFDB hash algorithm: sha1, sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// DAP key kind: aes, des, rsa or ecdsa.
    #[arg(long, requires = "dap_key")]
    dap: Option<String>,
    /// The DAP key (or per-card DAP master): pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long, requires = "dap")]
    dap_key: Option<String>,
    /// AID of the security domain that verifies the DAP (default: the card domain).
    #[arg(long)]
    dap_sd: Option<String>,
    /// Card list (CSV: identity,kdd) for one DAP per card.
    #[arg(long, requires = "diversify")]
    cards: Option<PathBuf>,
    /// Per-card DAP key scheme: emv, visa2, aes (kdf3 needs an SP 800-108 KDF in the token).
    #[arg(long, requires = "cards")]
    diversify: Option<Scheme>,
    /// Cipher the LFDB (D3/D4) under --cipher-key for the security domain to decrypt.
    #[arg(long, requires = "cipher_key")]
    encrypt: bool,
    /// The load-file cipher key: pkcs11:token=LABEL;object=KEY-LABEL (same token as --dap-key).
    #[arg(long, requires = "encrypt")]
    cipher_key: Option<String>,
    /// AID of the security domain that deciphers the LFDB (default: --dap-sd, else the card domain).
    #[arg(long)]
    cipher_sd: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
    /// Append a signing record to this ledger (created if absent).
    #[arg(long)]
    ledger: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The package.
    package: PathBuf,
    /// Check the DAPs with this key in the token (the DAP key or per-card master).
    #[arg(long)]
    dap_key: Option<String>,
    /// Check asymmetric DAPs with this public key (PEM, SubjectPublicKeyInfo).
    #[arg(long, conflicts_with = "dap_key")]
    public_key: Option<PathBuf>,
    /// Decipher the ciphered LFDB with this key in the token and check it against the manifest.
    #[arg(long)]
    cipher_key: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// Where the token PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
    #[arg(long, default_value = "prompt")]
    pin_source: PinSource,
    /// PKCS#11 module (default: from the URI, $PKCS11_MODULE, or SoftHSM2).
    #[arg(long)]
    module: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
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
        token: TokenArgs,
    },
}

#[derive(Subcommand, Debug)]
enum CardCommand {
    /// Print the card's registry as GET STATUS returns it.
    List {
        #[command(flatten)]
        card: CardArgs,
    },
    /// Lock the card (SECURED → CARD_LOCKED).
    Lock {
        #[command(flatten)]
        card: CardArgs,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Unlock the card (CARD_LOCKED → SECURED).
    Unlock {
        #[command(flatten)]
        card: CardArgs,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Terminate the card (irreversible).
    Terminate {
        #[command(flatten)]
        card: CardArgs,
        /// Type the card's KDD (hex) to confirm; the command refuses without it.
        #[arg(long)]
        confirm_kdd: String,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Create a vendor's security domain (SSD) through the card domain: INSTALL [for install and make
    /// selectable] from the card's security-domain module.
    CreateSd {
        #[command(flatten)]
        card: CardArgs,
        /// The new SSD's AID (hex, 5 to 16 bytes).
        #[arg(long)]
        sd: String,
        /// Comma-separated privileges besides Security Domain: dap-verification, mandated-dap-verification,
        /// ciphered-load-file-data-block, authorized-management, delegated-management, card-lock,
        /// card-terminate, trusted-path, global-service, cvm-management.
        #[arg(long, default_value = "dap-verification")]
        privileges: String,
        /// Secure channel protocol of the SSD's keys: 03 (i=70), 02 (i=55) or PP:II (default: the card
        /// domain's).
        #[arg(long)]
        scp: Option<String>,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Rotate the card domain's keys: a new per-card key set from --new-master replaces the current one.
    PutKeys {
        #[command(flatten)]
        card: CardArgs,
        /// The new master (same token as --master): pkcs11:token=LABEL;object=KEY-LABEL.
        #[arg(long)]
        new_master: String,
        /// The new master's scheme (default: --scheme).
        #[arg(long)]
        new_scheme: Option<Scheme>,
        /// Key version number of the new key set.
        #[arg(long, default_value = "32", value_parser = parse_kvn)]
        new_kvn: u8,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct CardArgs {
    /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
    #[arg(long)]
    card: CardRef,
    /// The issuer's master key: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long)]
    master: String,
    /// Key diversification scheme: emv, visa2 or aes.
    #[arg(long, default_value = "emv")]
    scheme: Scheme,
    #[command(flatten)]
    token: TokenArgs,
}

fn parse_kvn(s: &str) -> Result<u8, String> {
    let v = u8::from_str_radix(s, 16).map_err(|_| format!("'{s}' is not a hex byte"))?;
    if (1..=0x7F).contains(&v) {
        Ok(v)
    } else {
        Err(format!("key version {v:02X} is outside 01..7F"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A URI naming a key: the token part and the object label.
fn key_uri(text: &str, option: &str) -> Result<(TokenUri, String), Error> {
    let uri = TokenUri::parse(text)?;
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage(format!("{option} must name the key with object=LABEL")))?;
    Ok((uri, label))
}

fn open_token<'h>(
    hsm: &'h Hsm,
    uri: &TokenUri,
    token: &TokenArgs,
) -> Result<TokenSession<'h>, Error> {
    Ok(hsm.open(uri, &token.pin_source)?)
}

fn same_token(a: &TokenUri, b: &TokenUri, what: &str) -> Result<(), Error> {
    if a.token == b.token && a.serial == b.serial {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} must be in the same token (one PIN source reaches one token)"
        )))
    }
}

fn parse_aid(text: &str, option: &str) -> Result<Vec<u8>, Error> {
    let b =
        hex::decode(text).map_err(|_| Error::Usage(format!("{option}: '{text}' is not hex")))?;
    if (5..=16).contains(&b.len()) {
        Ok(b)
    } else {
        Err(Error::Usage(format!("{option}: an AID has 5 to 16 bytes")))
    }
}

fn with_master<T>(
    args: &CardArgs,
    f: impl FnOnce(&TokenSession<'_>, KeyHandle, &str) -> Result<T, Error>,
) -> Result<T, Error> {
    let (uri, label) = key_uri(&args.master, "--master")?;
    let hsm = Hsm::for_uri(&uri, args.token.module.as_deref())?;
    let session = open_token(&hsm, &uri, &args.token)?;
    let master = session.find_secret_key(&label)?;
    f(&session, master, &label)
}

/// The ledger's record of a token key used (issuer master, vendor DAP master or cipher key): label, ID,
/// type, KCV when the token can give one.
fn token_key_output(session: &TokenSession<'_>, key: KeyHandle, label: &str) -> Vec<Output> {
    let Ok(info) = session.key_info(key) else {
        return Vec::new();
    };
    let kcv = session.kcv(key).ok();
    vec![Output::Key {
        label: label.to_string(),
        id_hex: hex::encode(&info.id),
        key_type: key.key_type().map_or("unknown", SecretKeyType::name).into(),
        kcv_hex: kcv.map(|k| hex::encode(k.value)),
        kcv_method: kcv.map(|k| signer::dap::ledger_kcv_method(k.method)),
    }]
}

fn run(cli: Cli) -> Result<(), Error> {
    let dry = cli.dry_run;
    match cli.command {
        Command::Package(args) => package(args, dry),
        Command::Inspect { package } => inspect(&package),
        Command::Verify(args) => verify(args),
        Command::Keys {
            command:
                KeysCommand::Derive {
                    master,
                    scheme,
                    kdd,
                    key_type,
                    token,
                },
        } => keys_derive(&master, scheme, &kdd, key_type.as_deref(), &token, dry),
        Command::Personalise { card, ledger } => personalise(&card, ledger.as_deref(), dry),
        Command::Deploy {
            package,
            card,
            sd,
            ledger,
            delegated,
        } => match (&delegated.tokens, &sd) {
            (Some(_), Some(sd)) => signer::token::deploy(
                &package,
                &card.card,
                &card.master,
                card.scheme,
                &signer::token::TokenAccess {
                    pin_source: card.token.pin_source.clone(),
                    module: card.token.module.clone(),
                },
                sd,
                &delegated,
                ledger.as_deref(),
                dry,
            ),
            _ => deploy(&package, &card, sd.as_deref(), ledger.as_deref(), dry),
        },
        Command::Token { command } => signer::token::run(command, dry),
        Command::App { command } => signer::perso::run(command, dry),
        Command::Card { command } => card_command(command, dry),
        Command::Sd {
            command: SdCommand::PutKeys(args),
        } => sd_put_keys(&args, dry),
        Command::Batch(args) => signer::batch::run(&args, dry),
    }
}

fn keys_derive(
    master: &str,
    scheme: Scheme,
    kdd: &str,
    key_type: Option<&str>,
    token: &TokenArgs,
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
    let hsm = Hsm::for_uri(&uri, token.module.as_deref())?;
    let session = open_token(&hsm, &uri, token)?;
    let master_key = session.find_secret_key(&label)?;
    let out = requested.unwrap_or(match scheme {
        Scheme::Emv | Scheme::Visa2 => SecretKeyType::Des3TwoKey,
        _ => master_key.key_type().unwrap_or(SecretKeyType::Aes128),
    });
    let keys = derive_card_keys(&session, master_key, scheme, &kdd, out, Purpose::Check)?;
    let master_type = master_key
        .key_type()
        .map_or("unknown type", SecretKeyType::name);
    match session.kcv(master_key) {
        Ok(k) => println!("master        {label} ({master_type}), KCV {k}"),
        Err(_) => println!("master        {label} ({master_type})"),
    }
    println!("scheme        {scheme}");
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
}

fn package(a: PackageArgs, dry: bool) -> Result<(), Error> {
    if a.out.exists() {
        return Err(Error::OutputExists(a.out));
    }
    let hash_alg = signer::package::parse_hash(&a.hash)?;
    let dap_kind = a.dap.as_deref().map(str::parse::<DapKind>).transpose()?;
    let dap_sd = a
        .dap_sd
        .as_deref()
        .map(|s| parse_aid(s, "--dap-sd"))
        .transpose()?
        .unwrap_or_else(|| signer::channel::ISD_AID.to_vec());
    let cipher_sd = match a.cipher_sd.as_deref() {
        Some(s) => parse_aid(s, "--cipher-sd")?,
        None => dap_sd.clone(),
    };
    let dap_uri = a
        .dap_key
        .as_deref()
        .map(|k| key_uri(k, "--dap-key"))
        .transpose()?;
    let cipher_uri = a
        .cipher_key
        .as_deref()
        .map(|k| key_uri(k, "--cipher-key"))
        .transpose()?;
    if let (Some((d, _)), Some((c, _))) = (&dap_uri, &cipher_uri) {
        same_token(d, c, "--dap-key and --cipher-key")?;
    }
    let bytes = std::fs::read(&a.input).map_err(|source| Error::Io {
        path: a.input.clone(),
        source,
    })?;
    let is_ijc = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ijc"));
    let mut pkg = if is_ijc {
        Package::from_ijc(&bytes, &a.hash)?
    } else {
        Package::from_cap(&bytes, a.lfdb, &a.hash)?
    };
    // Card list checked in full before the first HSM call.
    let mut cards = Vec::new();
    if let Some(path) = &a.cards {
        if dap_kind.is_none() {
            return Err(Error::Usage("--cards needs --dap and --dap-key".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for card in CardReader::open(path)? {
            let card = card?;
            if !seen.insert(card.kdd) {
                return Err(Error::CardList {
                    path: path.clone(),
                    line: card.line,
                    field: "kdd".into(),
                    problem: "a card with this KDD is already listed".into(),
                });
            }
            cards.push(card);
        }
        if cards.is_empty() {
            return Err(Error::Usage(format!("{}: no cards listed", path.display())));
        }
    }
    if dry {
        println!(
            "would read {} and make its LFDB ({}, {} bytes), hash {}",
            a.input.display(),
            pkg.manifest.lfdb_policy,
            pkg.manifest.lfdb_length,
            a.hash
        );
        if let (Some(kind), Some((uri, label))) = (dap_kind, &dap_uri) {
            let per = if cards.is_empty() {
                "one DAP for every card".to_string()
            } else {
                format!(
                    "one DAP per card for {} cards, keys derived with {}",
                    cards.len(),
                    a.diversify.map_or("?", |s| s.name())
                )
            };
            println!(
                "would sign with {} key '{label}' in {uri} for security domain {}: {per}",
                kind.name(),
                hex::encode_upper(&dap_sd)
            );
        }
        if let Some((uri, label)) = &cipher_uri {
            println!(
                "would cipher the LFDB in {uri} under key '{label}' for security domain {}",
                hex::encode_upper(&cipher_sd)
            );
        }
        println!("would write {} (never overwritten)", a.out.display());
        if let Some(l) = &a.ledger {
            println!("would append a signing record to {}", l.display());
        }
        return Ok(());
    }
    let mut records = Records::open(a.ledger.as_deref(), a.token.pin_source.is_scripted())?;
    let result = sign_package(
        &a,
        &mut pkg,
        dap_kind,
        &dap_sd,
        &cipher_sd,
        &cards,
        &dap_uri,
        &cipher_uri,
        hash_alg,
        &mut records,
    );
    if let Err(e) = &result {
        records.abort("signer package", e);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn sign_package(
    a: &PackageArgs,
    pkg: &mut Package,
    dap_kind: Option<DapKind>,
    dap_sd: &[u8],
    cipher_sd: &[u8],
    cards: &[signer::cards::CardEntry],
    dap_uri: &Option<(TokenUri, String)>,
    cipher_uri: &Option<(TokenUri, String)>,
    hash_alg: gp_core::dap::HashAlg,
    records: &mut Records,
) -> Result<(), Error> {
    let mut key_outputs = Vec::new();
    let mut dap_outputs = Vec::new();
    let token_uri = dap_uri.as_ref().or(cipher_uri.as_ref()).map(|(u, _)| u);
    let hsm = token_uri
        .map(|u| Hsm::for_uri(u, a.token.module.as_deref()))
        .transpose()?;
    let session = match (&hsm, token_uri) {
        (Some(h), Some(u)) => Some(open_token(h, u, &a.token)?),
        _ => None,
    };
    let lfdb = pkg.lfdb_bytes()?;
    let lfdb_hash = pkg.lfdb_hash()?;
    if let (Some(kind), Some((_, label)), Some(session)) = (dap_kind, dap_uri, &session) {
        let key = DapKey::open(session, kind, label, a.diversify)?;
        key.check_hash(hash_alg)?;
        key_outputs.push(key.ledger_output());
        if cards.is_empty() {
            let sig = key.sign(&lfdb_hash)?;
            dap_outputs.push(records::dap_output(dap_sd, None, &sig));
            pkg.manifest.daps.push(key.record(dap_sd, None, &sig));
        } else {
            for card in cards {
                let sig = key.sign_for_card(&card.kdd, &lfdb_hash)?;
                dap_outputs.push(records::dap_output(dap_sd, Some(&card.identity), &sig));
                pkg.manifest
                    .daps
                    .push(key.record(dap_sd, Some((&card.identity, &card.kdd)), &sig));
            }
        }
    }
    if let (Some((_, label)), Some(session)) = (cipher_uri, &session) {
        let key = CipherKey::open(session, label)?;
        key_outputs.push(key.ledger_output());
        let (record, data) = key.encrypt(&lfdb, cipher_sd)?;
        pkg.manifest.cipher = Some(record);
        pkg.ciphered_lfdb = hex::encode_upper(&data);
        pkg.lfdb = String::new();
    }
    pkg.check()?;
    let bytes = pkg.to_bytes();
    signer::package::write_new_file(&a.out, &bytes)?;
    let mut inputs = vec![InputFile::from_path(&a.input)?];
    if let Some(c) = &a.cards {
        inputs.push(InputFile::from_path(c)?);
    }
    let mut common = vec![records::package_output(&bytes)];
    common.extend(key_outputs);
    records.record(
        EntryKind::Signing,
        "signer package",
        &format!("package {}", a.out.display()),
        &inputs,
        &common,
        &dap_outputs,
    )?;
    let m = &pkg.manifest;
    println!(
        "package {}: load file {} ({} bytes LFDB, {}), {} {}",
        a.out.display(),
        m.load_file_aid,
        m.lfdb_length,
        m.lfdb_policy,
        m.hash.to_uppercase(),
        m.lfdb_hash
    );
    if let Some(d) = m.daps.first() {
        println!(
            "DAPs          {} x {} by '{}' for security domain {}",
            m.daps.len(),
            d.algorithm,
            d.key,
            d.sd_aid
        );
    }
    if let Some(c) = &m.cipher {
        println!(
            "ciphered      {} under '{}' ({}) for security domain {}",
            c.algorithm, c.key, c.key_check, c.sd_aid
        );
    }
    if records.is_open() {
        println!(
            "recorded in   {}",
            a.ledger
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    Ok(())
}

fn inspect(path: &Path) -> Result<(), Error> {
    let (pkg, bytes) = Package::read_with_bytes(path)?;
    let m = &pkg.manifest;
    println!("format        {} v{}", pkg.format, pkg.version);
    println!(
        "package       SHA256 {}",
        hex::encode_upper(sha2_digest(&bytes))
    );
    println!("load file     {}", m.load_file_aid);
    for a in &m.applets {
        println!("applet        {a}");
    }
    println!("LFDB          {} bytes, {}", m.lfdb_length, m.lfdb_policy);
    println!("LFDB hash     {} {}", m.hash.to_uppercase(), m.lfdb_hash);
    println!("source        SHA256 {}", m.source_sha256);
    if let Some(c) = &m.cipher {
        println!(
            "cipher        {} under '{}' {} for SD {}",
            c.algorithm, c.key, c.key_check, c.sd_aid
        );
        println!("  ICV         {}", c.icv);
        println!("  ciphertext  {} bytes, SHA256 {}", c.length, c.sha256);
    }
    for d in &m.daps {
        let card = match (&d.card, &d.kdd, &d.diversification) {
            (Some(c), Some(k), Some(s)) => format!(" card {c} KDD {k} ({s})"),
            _ => " every card".to_string(),
        };
        println!(
            "DAP           SD {} {} key '{}' {}{card}",
            d.sd_aid, d.algorithm, d.key, d.key_check
        );
        println!("  signature   {}", d.signature);
    }
    Ok(())
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn verify(a: VerifyArgs) -> Result<(), Error> {
    let pkg = Package::read(&a.package)?;
    let m = &pkg.manifest;
    println!(
        "{}: manifest consistent ({} {}, {} DAPs{})",
        a.package.display(),
        m.hash.to_uppercase(),
        m.lfdb_hash,
        m.daps.len(),
        if m.cipher.is_some() {
            ", ciphered LFDB"
        } else {
            ""
        }
    );
    let lfdb_hash = pkg.lfdb_hash()?;
    if let Some(pem) = &a.public_key {
        let text = std::fs::read_to_string(pem).map_err(|source| Error::Io {
            path: pem.clone(),
            source,
        })?;
        let public = signer::dap::public_key_from_pem(&text)?;
        if m.daps.is_empty() {
            return Err(Error::Verification(
                "the package has no DAP to check".into(),
            ));
        }
        for d in &m.daps {
            signer::dap::verify_with_public(&public, d, &lfdb_hash)?;
        }
        println!(
            "DAPs          {} verified with {}",
            m.daps.len(),
            pem.display()
        );
    }
    let dap_uri = a
        .dap_key
        .as_deref()
        .map(|k| key_uri(k, "--dap-key"))
        .transpose()?;
    let cipher_uri = a
        .cipher_key
        .as_deref()
        .map(|k| key_uri(k, "--cipher-key"))
        .transpose()?;
    if let (Some((d, _)), Some((c, _))) = (&dap_uri, &cipher_uri) {
        same_token(d, c, "--dap-key and --cipher-key")?;
    }
    let Some((uri, _)) = dap_uri.as_ref().or(cipher_uri.as_ref()) else {
        return Ok(());
    };
    let hsm = Hsm::for_uri(uri, a.token.module.as_deref())?;
    let session = open_token(&hsm, uri, &a.token)?;
    if let Some((_, label)) = &dap_uri {
        if m.daps.is_empty() {
            return Err(Error::Verification(
                "the package has no DAP to check".into(),
            ));
        }
        for d in &m.daps {
            let kind = match signer::package::DapAlgorithm::parse(&d.algorithm) {
                Some(signer::package::DapAlgorithm::AesCmac) => DapKind::Aes,
                Some(signer::package::DapAlgorithm::Des3RetailMac) => DapKind::Des,
                Some(signer::package::DapAlgorithm::EcdsaP256Sha256) => DapKind::Ecdsa,
                _ => DapKind::Rsa,
            };
            let scheme = d
                .diversification
                .as_deref()
                .map(str::parse::<Scheme>)
                .transpose()
                .map_err(|e| Error::Verification(e.to_string()))?;
            let key = DapKey::open(&session, kind, label, scheme)?;
            key.verify(d, &lfdb_hash)?;
        }
        println!(
            "DAPs          {} verified with '{label}' in the token",
            m.daps.len()
        );
    }
    if let Some((_, label)) = &cipher_uri {
        let c = m.cipher.as_ref().ok_or_else(|| {
            Error::Verification("the package has no ciphered LFDB to check".into())
        })?;
        let key = CipherKey::open(&session, label)?;
        let plain = key.decrypt(c, &pkg.ciphered_bytes()?)?;
        let alg = pkg.hash_alg()?;
        let hash = gp_core::dap::lfdb_hash(alg, &plain);
        if plain.len() as u64 != m.lfdb_length || hash != lfdb_hash {
            return Err(Error::Verification(
                "the deciphered LFDB does not match manifest.lfdb_hash".into(),
            ));
        }
        signer::cap::LoadFile::from_ijc(&plain)
            .map_err(|e| Error::Verification(format!("the deciphered LFDB: {e}")))?;
        println!(
            "ciphered LFDB deciphers to the LFDB the manifest names ({} bytes)",
            plain.len()
        );
    }
    Ok(())
}

fn personalise(card: &CardArgs, ledger: Option<&Path>, dry: bool) -> Result<(), Error> {
    if dry {
        println!("would connect to {}", card.card);
        println!("would open SCP03 with the card's transport keys (default key, imported as session objects)");
        println!(
            "would derive the card's ENC, MAC, DEK in the token from {} ({}), PUT KEY them as KVN {:02X}",
            card.master,
            card.scheme,
            gp::ISSUER_KVN
        );
        println!("would set the card INITIALIZED, then SECURED");
        return Ok(());
    }
    let mut records = Records::open(ledger, card.token.pin_source.is_scripted())?;
    let mut t = connect(&card.card)?;
    let result = with_master(card, |session, master, label| {
        let done = gp::personalise(t.as_mut(), session, master, card.scheme)?;
        let mut common = token_key_output(session, master, label);
        common.push(records::card_output(&format!(
            "KDD:{}",
            hex::encode_upper(done.kdd)
        )));
        records.record(
            EntryKind::Delivery,
            "signer personalise",
            "issuer keys put",
            &[],
            &common,
            &[],
        )?;
        Ok(done)
    });
    let done = match result {
        Ok(d) => d,
        Err(e) => {
            records.abort("signer personalise", &e);
            return Err(e);
        }
    };
    println!("card KDD      {}", hex::encode_upper(done.kdd));
    println!(
        "issuer keys   KVN {:02X} derived in the token ({}), put with PUT KEY over SCP03",
        done.kvn, card.scheme
    );
    for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(done.kcvs) {
        println!(
            "  {name} KCV     {} (AES-ECB(01*16) GPC B.6)",
            hex::encode_upper(kcv)
        );
    }
    println!("card state    SECURED");
    Ok(())
}

fn deploy(
    path: &Path,
    card: &CardArgs,
    sd: Option<&str>,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let (pkg, bytes) = Package::read_with_bytes(path)?;
    let sd_aid = sd.map(|s| parse_aid(s, "--sd")).transpose()?;
    let applets = pkg.applets()?;
    let ciphered = match &pkg.manifest.cipher {
        Some(c) => Some((
            hex::decode(&c.icv).map_err(|_| Error::Usage("manifest.cipher.icv".into()))?,
            pkg.ciphered_bytes()?,
        )),
        None => None,
    };
    let req = LoadRequest {
        load_file_aid: pkg.load_file_aid()?,
        lfdb: if ciphered.is_some() {
            Vec::new()
        } else {
            pkg.lfdb_bytes()?
        },
        lfdb_hash: pkg.lfdb_hash()?,
        applets: applets.iter().map(|a| (a.clone(), a.clone())).collect(),
    };
    if dry {
        println!(
            "would connect to {} and open SCP03 to the card domain with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would INSTALL [for load] {} to security domain {}",
            pkg.manifest.load_file_aid,
            sd_aid.as_deref().map_or(
                "A000000151000000 (card domain)".to_string(),
                hex::encode_upper
            )
        );
        println!(
            "would LOAD {} with the DAPs made for the card's KDD ({} DAPs in the package)",
            if ciphered.is_some() {
                "the ciphered LFDB (D3/D4)"
            } else {
                "the LFDB (C4)"
            },
            pkg.manifest.daps.len()
        );
        for a in &pkg.manifest.applets {
            println!("would INSTALL [for install and make selectable] {a}");
        }
        return Ok(());
    }
    let mut records = Records::open(ledger, card.token.pin_source.is_scripted())?;
    let mut t = connect(&card.card)?;
    let result = with_master(card, |session, master, label| {
        let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
        println!(
            "secure channel SCP03 to the card domain of card {} (C-MAC, C-DEC)",
            hex::encode_upper(kdd)
        );
        let opts = LoadOptions {
            sd_aid: sd_aid.clone(),
            dap_blocks: pkg.dap_blocks_for(&kdd)?,
            ciphered: ciphered.clone(),
        };
        gp::load_and_install_with(&mut ch, &req, &opts)?;
        let identity = format!("KDD:{}", hex::encode_upper(kdd));
        let mut common = vec![records::package_output(&bytes)];
        common.extend(token_key_output(session, master, label));
        common.push(records::card_output(&identity));
        let daps: Vec<Output> = opts
            .dap_blocks
            .iter()
            .map(|(sd, sig)| records::dap_output(sd, Some(&identity), sig))
            .collect();
        records.record(
            EntryKind::Delivery,
            "signer deploy",
            &format!("load {}", pkg.manifest.load_file_aid),
            &[],
            &common,
            &daps,
        )?;
        Ok(opts)
    });
    let opts = match result {
        Ok(o) => o,
        Err(e) => {
            records.abort("signer deploy", &e);
            return Err(e);
        }
    };
    println!(
        "loaded        {} ({} bytes, {} {}){}{}",
        pkg.manifest.load_file_aid,
        pkg.manifest.lfdb_length,
        pkg.manifest.hash.to_uppercase(),
        pkg.manifest.lfdb_hash,
        if opts.ciphered.is_some() {
            ", ciphered"
        } else {
            ""
        },
        match opts.dap_blocks.len() {
            0 => String::new(),
            n => format!(", {n} DAP block(s)"),
        }
    );
    for a in &pkg.manifest.applets {
        println!("installed     {a} (selectable)");
    }
    Ok(())
}

fn card_command(command: CardCommand, dry: bool) -> Result<(), Error> {
    let (card, change, ledger, confirm) = match command {
        CardCommand::List { card } => {
            if dry {
                println!(
                    "would connect to {} and read the registry with GET STATUS",
                    card.card
                );
                return Ok(());
            }
            let mut t = connect(&card.card)?;
            return with_master(&card, |session, master, _| {
                let (mut ch, _) =
                    gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
                for (p1, e) in gp::registry(&mut ch)? {
                    println!("{}", gp::describe_entry(p1, &e));
                }
                Ok(())
            });
        }
        CardCommand::PutKeys {
            card,
            new_master,
            new_scheme,
            new_kvn,
            ledger,
        } => {
            return put_keys(
                &card,
                &new_master,
                new_scheme,
                new_kvn,
                ledger.as_deref(),
                dry,
            )
        }
        CardCommand::CreateSd {
            card,
            sd,
            privileges,
            scp,
            ledger,
        } => {
            return create_sd(
                &card,
                &sd,
                &privileges,
                scp.as_deref(),
                ledger.as_deref(),
                dry,
            )
        }
        CardCommand::Lock { card, ledger } => (card, CardStateChange::Lock, ledger, None),
        CardCommand::Unlock { card, ledger } => (card, CardStateChange::Unlock, ledger, None),
        CardCommand::Terminate {
            card,
            confirm_kdd,
            ledger,
        } => (card, CardStateChange::Terminate, ledger, Some(confirm_kdd)),
    };
    if dry {
        println!(
            "would connect to {}, open SCP03 to the card domain and SET STATUS {:02X} ({})",
            card.card,
            change.code(),
            change.state_name()
        );
        return Ok(());
    }
    let mut records = Records::open(ledger.as_deref(), card.token.pin_source.is_scripted())?;
    let mut t = connect(&card.card)?;
    let run = format!("signer card {}", change.state_name().to_lowercase());
    let result = with_master(&card, |session, master, label| {
        let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
        if let Some(confirm) = &confirm {
            if !confirm.eq_ignore_ascii_case(&hex::encode(kdd)) {
                return Err(Error::Usage(format!(
                    "--confirm-kdd {confirm} is not this card's KDD {}; nothing was changed",
                    hex::encode_upper(kdd)
                )));
            }
        }
        gp::set_card_state(&mut ch, change)?;
        let mut common = token_key_output(session, master, label);
        common.push(records::card_output(&format!(
            "KDD:{}",
            hex::encode_upper(kdd)
        )));
        records.record(
            EntryKind::Delivery,
            &run,
            change.state_name(),
            &[],
            &common,
            &[],
        )?;
        Ok(kdd)
    });
    match result {
        Ok(kdd) => {
            println!(
                "card {}     {}",
                hex::encode_upper(kdd),
                change.state_name()
            );
            Ok(())
        }
        Err(e) => {
            records.abort(&run, &e);
            Err(e)
        }
    }
}

fn put_keys(
    card: &CardArgs,
    new_master: &str,
    new_scheme: Option<Scheme>,
    new_kvn: u8,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let (uri, _) = key_uri(&card.master, "--master")?;
    let (new_uri, new_label) = key_uri(new_master, "--new-master")?;
    same_token(&uri, &new_uri, "--master and --new-master")?;
    let scheme = new_scheme.unwrap_or(card.scheme);
    if dry {
        println!(
            "would connect to {} and open SCP03 with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would derive the new ENC, MAC, DEK from '{new_label}' ({scheme}) and PUT KEY them as KVN {new_kvn:02X}, \
             wrapped in the token under the card's current DEK, replacing the current key set"
        );
        return Ok(());
    }
    let mut records = Records::open(ledger, card.token.pin_source.is_scripted())?;
    let mut t = connect(&card.card)?;
    let result = with_master(card, |session, master, _| {
        let nm = session.find_secret_key(&new_label)?;
        signer::channel::select(t.as_mut(), &signer::channel::ISD_AID)?;
        let (hc, iu) = signer::channel::initialize_update(t.as_mut(), session, 0)?;
        let current = derive_card_keys(
            session,
            master,
            card.scheme,
            &iu.kdd,
            SecretKeyType::Aes128,
            Purpose::Channel,
        )?;
        let statics = signer::channel::StaticKeys {
            enc: current.enc.handle(),
            mac: current.mac.handle(),
            dek: current.dek.handle(),
        };
        let mut ch = signer::channel::SecureChannel::authenticate(
            t.as_mut(),
            session,
            statics,
            hc,
            &iu,
            gp_core::scp03::SecurityLevel::C_MAC_C_DEC,
        )?;
        let new = derive_card_keys(
            session,
            nm,
            scheme,
            &iu.kdd,
            SecretKeyType::Aes128,
            Purpose::PutKey,
        )?;
        let kcvs = gp::put_key_set(&mut ch, session, statics.dek, &new, iu.kvn, new_kvn)?;
        let mut common = token_key_output(session, nm, &new_label);
        common.push(records::card_output(&format!(
            "KDD:{}",
            hex::encode_upper(iu.kdd)
        )));
        records.record(
            EntryKind::Delivery,
            "signer card put-keys",
            &format!("key set {new_kvn:02X}"),
            &[],
            &common,
            &[],
        )?;
        Ok((iu.kdd, iu.kvn, kcvs))
    });
    match result {
        Ok((kdd, old, kcvs)) => {
            println!("card {}: key set {old:02X} replaced by {new_kvn:02X} from '{new_label}' ({scheme})", hex::encode_upper(kdd));
            for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(kcvs) {
                println!(
                    "  {name} KCV     {} (AES-ECB(01*16) GPC B.6)",
                    hex::encode_upper(kcv)
                );
            }
            Ok(())
        }
        Err(e) => {
            records.abort("signer card put-keys", &e);
            Err(e)
        }
    }
}

fn create_sd(
    card: &CardArgs,
    sd: &str,
    privileges: &str,
    scp: Option<&str>,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let spec = signer::sd::SdSpec {
        aid: parse_aid(sd, "--sd")?,
        privileges: signer::sd::parse_privileges(privileges)?,
        scp: scp.map(signer::sd::parse_scp).transpose()?,
    };
    let aid = hex::encode_upper(&spec.aid);
    let names = signer::sd::privilege_names(&spec.privileges).join(", ");
    let protocol = spec.scp.map_or("the card domain's".to_string(), |(p, i)| {
        format!("SCP{p:02X} i={i:02X}")
    });
    if dry {
        println!(
            "would connect to {} and open SCP03 to the card domain with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would INSTALL [for install and make selectable] security domain {aid} from {} module {}",
            hex::encode_upper(signer::sd::SD_LOAD_FILE_AID),
            hex::encode_upper(signer::sd::SD_MODULE_AID)
        );
        println!(
            "  privileges {} ({names}), install parameters {} (protocol {protocol})",
            hex::encode_upper(spec.privileges),
            hex::encode_upper(spec.install_parameters())
        );
        println!("would read the registry back and show the new security domain");
        if let Some(l) = ledger {
            println!("would append a delivery record to {}", l.display());
        }
        return Ok(());
    }
    let mut records = Records::open(ledger, card.token.pin_source.is_scripted())?;
    let mut t = connect(&card.card)?;
    let run = "signer card create-sd";
    let result = with_master(card, |session, master, label| {
        let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
        signer::sd::create_security_domain(&mut ch, &spec)?;
        let entry = gp::registry(&mut ch)?
            .into_iter()
            .find(|(p1, e)| *p1 == 0x40 && e.aid == spec.aid)
            .ok_or_else(|| {
                Error::Card(format!(
                    "the card accepted the INSTALL but its registry does not list {aid}"
                ))
            })?;
        let mut common = token_key_output(session, master, label);
        common.push(records::card_output(&format!(
            "KDD:{}",
            hex::encode_upper(kdd)
        )));
        records.record(
            EntryKind::Delivery,
            run,
            &format!("create security domain {aid}"),
            &[],
            &common,
            &[],
        )?;
        Ok((kdd, entry))
    });
    match result {
        Ok((kdd, (p1, entry))) => {
            println!(
                "card {}: security domain {aid} created",
                hex::encode_upper(kdd)
            );
            println!(
                "  privileges  {} ({names}), protocol {protocol}",
                hex::encode_upper(spec.privileges)
            );
            println!("  registry    {}", gp::describe_entry(p1, &entry));
            println!(
                "  keys        its transport key set; the vendor puts its own with `signer sd put-keys`"
            );
            Ok(())
        }
        Err(e) => {
            records.abort(run, &e);
            Err(e)
        }
    }
}

fn sd_put_keys(a: &SdPutKeysArgs, dry: bool) -> Result<(), Error> {
    use signer::sd::{CIPHER_KVN, DAP_KVN, SD_KEY_ID, SSD_CHANNEL_KVN};
    let sd_aid = parse_aid(&a.sd, "--sd")?;
    let dap = match (&a.dap_master, a.diversify) {
        (Some(m), Some(scheme)) => Some((key_uri(m, "--dap-master")?, scheme)),
        _ => None,
    };
    let cipher = a
        .cipher_key
        .as_deref()
        .map(|k| key_uri(k, "--cipher-key"))
        .transpose()?;
    let channel_scheme = a.channel_scheme.unwrap_or(Scheme::Aes);
    let channel = a
        .channel_master
        .as_deref()
        .map(|k| key_uri(k, "--channel-master"))
        .transpose()?;
    let uris: Vec<(&TokenUri, &str)> = [
        dap.as_ref().map(|((u, _), _)| (u, "--dap-master")),
        cipher.as_ref().map(|(u, _)| (u, "--cipher-key")),
        channel.as_ref().map(|(u, _)| (u, "--channel-master")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let Some(&(uri, first)) = uris.first() else {
        return Err(Error::Usage(
            "name at least one key to put: --dap-master, --cipher-key or --channel-master".into(),
        ));
    };
    for (other, name) in uris.iter().skip(1) {
        same_token(uri, other, &format!("{first} and {name}"))?;
    }
    let uri = uri.clone();
    let aid = hex::encode_upper(&sd_aid);
    if dry {
        println!(
            "would connect to {}, SELECT security domain {aid} and open SCP03 to it with its transport \
             key set (the default key, imported into the token of {first} as session objects)",
            a.card
        );
        if let Some((_, label)) = &channel {
            println!(
                "  or, when the SSD reports key set {SSD_CHANNEL_KVN:02X}, with its per-card keys derived \
                 in the token from '{label}' ({channel_scheme})"
            );
        }
        println!(
            "would read the SSD's key information (GET DATA 00E0) and {} key versions it already holds",
            if a.replace { "replace" } else { "refuse" }
        );
        if let Some(((_, dap_label), scheme)) = &dap {
            println!(
                "would derive the card's DAP key in the token from '{dap_label}' ({scheme}) and the KDD the SSD reports",
            );
            println!(
                "would PUT KEY it as KVN {DAP_KVN:02X} key {SD_KEY_ID:02X}, wrapped in the token under the SSD's DEK",
            );
        }
        if let Some((_, label)) = &cipher {
            println!(
                "would PUT KEY '{label}' as KVN {CIPHER_KVN:02X} key {SD_KEY_ID:02X}, wrapped in the token under the SSD's DEK",
            );
        }
        if let Some((_, label)) = &channel {
            println!(
                "would derive the card's ENC, MAC, DEK in the token from '{label}' ({channel_scheme}) and PUT KEY \
                 them as key set {SSD_CHANNEL_KVN:02X}, wrapped under the SSD's DEK, replacing its transport key set"
            );
        }
        println!("would check the KCVs the card confirms against the token's; no key leaves the token in clear");
        if let Some(l) = &a.ledger {
            println!("would append a delivery record to {}", l.display());
        }
        return Ok(());
    }
    let mut records = Records::open(a.ledger.as_deref(), a.token.pin_source.is_scripted())?;
    let mut t = connect(&a.card)?;
    let run = "signer sd put-keys";
    let result = (|| {
        let hsm = Hsm::for_uri(&uri, a.token.module.as_deref())?;
        let session = open_token(&hsm, &uri, &a.token)?;
        let dap_master = dap
            .as_ref()
            .map(|((_, label), scheme)| {
                session
                    .find_secret_key(label)
                    .map(|k| (label.as_str(), k, *scheme))
            })
            .transpose()?;
        let cipher_key = cipher
            .as_ref()
            .map(|(_, label)| session.find_secret_key(label).map(|k| (label.as_str(), k)))
            .transpose()?;
        let channel_master = channel
            .as_ref()
            .map(|(_, label)| session.find_secret_key(label).map(|k| (label.as_str(), k)))
            .transpose()?;
        let (mut ch, iu, keys) = signer::sd::open_sd_channel_for(
            t.as_mut(),
            &session,
            &sd_aid,
            channel_master.map(|(_, k)| (k, channel_scheme)),
        )?;
        let statics = keys.statics();
        // Refuse, before any key is sent, what the card would refuse half-way (6A80).
        let held = signer::sd::held_key_versions(&mut ch)?;
        let replaced = |kvn: u8, what: &str| -> Result<u8, Error> {
            match (held.contains(&kvn), a.replace) {
                (false, _) => Ok(0),
                (true, true) => Ok(kvn),
                (true, false) => Err(Error::Usage(format!(
                    "security domain {aid} already holds KVN {kvn:02X} ({what}); nothing was put. \
                     Rerun with --replace to replace it"
                ))),
            }
        };
        let dap_replace = dap_master
            .map(|_| replaced(DAP_KVN, "a DAP key"))
            .transpose()?;
        let cipher_replace = cipher_key
            .map(|_| replaced(CIPHER_KVN, "a load-file cipher key"))
            .transpose()?;
        if channel_master.is_some() && !keys.is_per_card() && held.contains(&SSD_CHANNEL_KVN) {
            return Err(Error::Usage(format!(
                "security domain {aid} already holds key set {SSD_CHANNEL_KVN:02X} but answers with key set \
                 {:02X}; nothing was put",
                iu.kvn
            )));
        }
        let mut put = Vec::new();
        let mut common = Vec::new();
        if let Some((label, master, scheme)) = dap_master {
            let dap_key = signer::sd::derive_sd_dap_key(&session, master, scheme, &iu.kdd)?;
            let kcv = signer::sd::put_sd_key(
                &mut ch,
                &session,
                statics.dek,
                dap_key.handle(),
                dap_replace.unwrap_or(0),
                DAP_KVN,
            )?;
            put.push((
                DAP_KVN,
                format!("DAP key for this card from '{label}' ({scheme})"),
                kcv,
                dap_replace.unwrap_or(0) != 0,
            ));
            common.extend(token_key_output(&session, master, label));
        }
        if let Some((label, key)) = cipher_key {
            let kcv = signer::sd::put_sd_key(
                &mut ch,
                &session,
                statics.dek,
                key,
                cipher_replace.unwrap_or(0),
                CIPHER_KVN,
            )?;
            put.push((
                CIPHER_KVN,
                format!("load-file cipher key '{label}'"),
                kcv,
                cipher_replace.unwrap_or(0) != 0,
            ));
            common.extend(token_key_output(&session, key, label));
        }
        // The key set goes last: it is wrapped under the DEK this channel opened with, which it replaces.
        let mut channel_set = None;
        if let Some((label, master)) = channel_master {
            if keys.is_per_card() {
                channel_set = Some((label, None));
            } else {
                let new = derive_card_keys(
                    &session,
                    master,
                    channel_scheme,
                    &iu.kdd,
                    SecretKeyType::Aes128,
                    Purpose::PutKey,
                )?;
                let kcvs = gp::put_key_set(
                    &mut ch,
                    &session,
                    statics.dek,
                    &new,
                    iu.kvn,
                    SSD_CHANNEL_KVN,
                )?;
                channel_set = Some((label, Some(kcvs)));
            }
            common.extend(token_key_output(&session, master, label));
        }
        common.push(records::card_output(&format!(
            "KDD:{}",
            hex::encode_upper(iu.kdd)
        )));
        let mut kvns: Vec<String> = put.iter().map(|(k, ..)| format!("{k:02X}")).collect();
        if let Some((_, Some(_))) = &channel_set {
            kvns.push(format!(
                "key set {SSD_CHANNEL_KVN:02X} replacing {:02X}",
                iu.kvn
            ));
        }
        if !kvns.is_empty() {
            records.record(
                EntryKind::Delivery,
                run,
                &format!("security domain {aid} keys {}", kvns.join(",")),
                &[],
                &common,
                &[],
            )?;
        }
        Ok((iu.kdd, iu.kvn, put, channel_set))
    })();
    match result {
        Ok((kdd, kvn, put, channel_set)) => {
            println!(
                "card {}: security domain {aid}, SCP03 with its key set {kvn:02X}",
                hex::encode_upper(kdd)
            );
            for (kvn, what, kcv, was_replaced) in put {
                println!(
                    "  KVN {kvn:02X} key {SD_KEY_ID:02X}  {what}, KCV {} (AES-ECB(01*16) GPC B.6), {}confirmed by the card",
                    hex::encode_upper(kcv),
                    if was_replaced { "replaced, " } else { "" }
                );
            }
            match channel_set {
                Some((label, Some(kcvs))) => {
                    println!(
                        "  key set {kvn:02X} replaced by {SSD_CHANNEL_KVN:02X} from '{label}' ({channel_scheme}), confirmed by the card"
                    );
                    for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(kcvs) {
                        println!(
                            "    {name} KCV {} (AES-ECB(01*16) GPC B.6)",
                            hex::encode_upper(kcv)
                        );
                    }
                }
                Some((label, None)) => println!(
                    "  key set {SSD_CHANNEL_KVN:02X} from '{label}' ({channel_scheme}) already in place (the channel opened with it)"
                ),
                None => {}
            }
            Ok(())
        }
        Err(e) => {
            records.abort(run, &e);
            Err(e)
        }
    }
}
