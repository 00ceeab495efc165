//! `admin-server campaign add|list|show|pause|resume|cancel`: campaigns in the server's database.

use crate::db::{CampaignState, Db};
use crate::error::Error;
use crate::plan::InstallSettings;
use sha2::{Digest, Sha256};
use signer::cards::CardReader;
use signer::package::Package;
use std::path::Path;

/// Most cards one campaign may list.
pub const MAX_CARDS: usize = 10_000_000;

/// Adds campaign `name`: the package (checked, and stored in the database so later changes to the file
/// do not matter), the cards of the card list, and the security domain the load file goes to (the ISD
/// when `None`). Every card must have its DAP in the package when the package has per-card DAPs.
///
/// `privileges` (hex, 1 or 3 bytes) and `install_parameters` (hex, starting with the `C9` object) are
/// what INSTALL [for install] gives each application; the defaults are `signer deploy`'s.
pub fn add(
    db: &mut Db,
    name: &str,
    package: &Path,
    cards: &Path,
    sd: Option<&str>,
    privileges: Option<&str>,
    install_parameters: Option<&str>,
) -> Result<String, Error> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::Usage(
            "a campaign name is 1 to 64 characters from A-Z a-z 0-9 - _ .".into(),
        ));
    }
    let (pkg, bytes) = Package::read_with_bytes(package)?;
    let mut settings = InstallSettings {
        sd_aid: sd
            .map(|s| signer::token::parse_aid(s, "--sd"))
            .transpose()?,
        ..InstallSettings::default()
    };
    if let Some(p) = privileges {
        settings.privileges = hex::decode(p)
            .ok()
            .filter(|b| b.len() == 1 || b.len() == 3)
            .ok_or_else(|| Error::Usage(format!("--privileges '{p}': 1 or 3 bytes in hex")))?;
    }
    if let Some(p) = install_parameters {
        let bytes = hex::decode(p)
            .map_err(|_| Error::Usage(format!("--install-params '{p}' is not hex")))?;
        // The field must start with the application-specific parameters object C9 and be whole BER-TLV.
        let whole = gp_core::tlv::TlvReader::new(&bytes).all(|t| t.is_ok());
        if bytes.first() != Some(&0xC9) || !whole || bytes.len() > 200 {
            return Err(Error::Usage(format!(
                "--install-params '{p}': BER-TLV starting with C9 (e.g. C900), at most 200 bytes"
            )));
        }
        settings.install_parameters = bytes;
    }
    let mut reader = CardReader::open(cards)?;
    let mut list = Vec::new();
    while let Some(card) = reader.next_card()? {
        if list.len() >= MAX_CARDS {
            return Err(Error::Usage(format!("more than {MAX_CARDS} cards")));
        }
        pkg.dap_blocks_for(&card.kdd)?;
        list.push((card.identity, card.kdd));
    }
    let Some((_, first)) = list.first() else {
        return Err(Error::Usage(format!("{} lists no card", cards.display())));
    };
    // The commands are the same size for every card: build them once to refuse a package the cards
    // could never take (more than 256 LOAD blocks, parameters that do not fit an APDU).
    crate::plan::Operation::for_card(&pkg, first, &settings)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    db.add_campaign(name, &bytes, &sha, &settings, &list)?;
    Ok(format!(
        "campaign {name} added: package {} (SHA-256 {sha}), {} cards, security domain {}, privileges {}, install parameters {}",
        pkg.manifest.load_file_aid,
        list.len(),
        sd.unwrap_or("ISD"),
        hex::encode_upper(&settings.privileges),
        hex::encode_upper(&settings.install_parameters)
    ))
}

/// One line per campaign.
pub fn list(db: &Db) -> Result<String, Error> {
    let mut out = String::from("NAME STATE PENDING IN_FLIGHT DONE FAILED PACKAGE-SHA256\n");
    for c in db.campaigns()? {
        let [p, i, d, f] = c.counts;
        out.push_str(&format!(
            "{} {} {p} {i} {d} {f} {}\n",
            c.name, c.state, c.package_sha256
        ));
    }
    Ok(out)
}

/// One line per card of campaign `name`.
pub fn show(db: &Db, name: &str) -> Result<String, Error> {
    let cards = db.cards(name)?;
    if cards.is_empty() && !db.campaigns()?.iter().any(|c| c.name == name) {
        return Err(Error::Campaign(format!("no campaign named '{name}'")));
    }
    let mut out = String::from("IDENTITY KDD STATE ATTEMPTS REASON\n");
    for c in cards {
        out.push_str(&format!(
            "{} {} {} {} {}\n",
            c.identity,
            c.kdd,
            c.state.as_str(),
            c.attempts,
            c.reason.as_deref().unwrap_or("-")
        ));
    }
    Ok(out)
}

/// Pauses, resumes or cancels campaign `name`.
pub fn set_state(db: &mut Db, name: &str, state: CampaignState) -> Result<String, Error> {
    db.set_campaign_state(name, state)?;
    Ok(format!("campaign {name}: {state:?}").to_lowercase())
}
