//! Signer benchmarks (`cargo bench -p signer --bench perf`), written to `docs/PERFORMANCE.md`.
//!
//! A plain `main` (no harness): it makes its own SoftHSM2 token, so it needs `softhsm2-util`, and it never
//! runs under `cargo test`. What it measures, and why:
//! * per-card key sets (3 derived keys + 3 KCVs + 3 wraps, the batch's work) and per-card DAPs (a derived
//!   DAP key + CMAC) per second with 1 and 2 workers, each against a bare loop making the same token calls
//!   through the same keyman session API without the signer around it (card lists, JSON, ordering, APDU
//!   building): the ratio shows what the signer adds on top of the token's own cost;
//! * a whole `signer batch` run over `PERF_BATCH_CARDS` cards (default 1,000,000): its peak RSS, which
//!   must stay flat however many cards there are;
//! * LFDB hashing of 1 MB and 16 MB load files with `gp_core::dap::lfdb_hash` against `sha2` alone, and
//!   hashing plus an AES DAP in the token;
//! * on NSS softokn (a database made with `certutil`): kdf3 key sets and per-card DAPs, which SoftHSM2
//!   cannot derive, and SCP03 session setups in-token against the host way. `PERF_SECTION=nss` runs only
//!   this section and replaces it in the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gp_core::diversify::Scheme;
use keyman::hsm::{Hsm, KeyHandle, SecretKeySpec, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::pin::PinSource;
use postissue_tests::{SoftHsm, PIN_VAR};
use secrecy::SecretSlice;
use sha2::Digest;
use signer::diversify::{derive_card_keys, Purpose};
use std::hint::black_box;
use std::time::Instant;

/// Rounds of each rate measurement; the best round of each side is reported.
const ROUNDS: usize = 3;

fn kdd(i: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[2..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Runs `per_card` for `cards` cards split over `workers` sessions; returns cards per second.
fn rate(
    session: &TokenSession<'_>,
    workers: usize,
    cards: u64,
    per_card: &(dyn Fn(&TokenSession<'_>, u64) + Sync),
) -> f64 {
    let sessions: Vec<_> = (0..workers)
        .map(|_| session.another_session().unwrap())
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, sess) in sessions.into_iter().enumerate() {
            s.spawn(move || {
                let mut i = w as u64;
                while i < cards {
                    per_card(&sess, i);
                    i += workers as u64;
                }
            });
        }
    });
    cards as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cards: u64 = std::env::var("PERF_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PERFORMANCE.md");
    if std::env::var("PERF_SECTION").as_deref() == Ok("nss") {
        // Only the NSS softokn tables, replacing that section of the existing file.
        let nss = nss_section(cards);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = old.split(NSS_HEADING).next().unwrap_or_default().trim_end();
        std::fs::write(&path, format!("{kept}\n\n{nss}")).unwrap();
        print!("{nss}");
        return;
    }
    let batch_cards: u64 = std::env::var("PERF_BATCH_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let store = SoftHsm::new();
    store.init_token("perf");
    std::env::set_var("SOFTHSM2_CONF", store.conf());
    std::env::set_var(PIN_VAR, &store.pin);
    let hsm = Hsm::load(None).unwrap();
    let session = hsm
        .open(
            &TokenUri::parse("perf").unwrap(),
            &PinSource::Env(PIN_VAR.into()),
        )
        .unwrap();
    let spec = |label: &str, id: u8, key_type, usages: Vec<Usage>| SecretKeySpec {
        label: label.into(),
        id: vec![id],
        key_type,
        usages,
        extractable: false,
    };
    let (kmc, _) = session
        .generate_secret(&spec(
            "kmc",
            1,
            SecretKeyType::Des3TwoKey,
            vec![Usage::Derive],
        ))
        .unwrap();
    let (dap, _) = session
        .generate_secret(&spec(
            "dap",
            2,
            SecretKeyType::Aes128,
            vec![Usage::Derive, Usage::Sign],
        ))
        .unwrap();
    let transport = session
        .import_session_key(
            &SecretSlice::from(signer::gp::DEFAULT_TRANSPORT_KEY.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Wrap],
        )
        .unwrap();
    let tk: KeyHandle = transport.handle();

    let mut md = String::new();
    md.push_str("# Performance\n\nMeasured by `cargo bench -p signer --bench perf` (signer/benches/perf.rs), which writes this file.\n");
    md.push_str("Machine: the project's 2-core development machine, shared with other work while it ran, so absolute numbers\n");
    md.push_str(
        "are indicative. Rates are the best of 3 interleaved rounds per side, and the ratios compare those. The bare\nloop makes the same token calls through keyman's session API; the signer adds the card list, the key checks,\nthe PUT KEY or DAP records and the JSON around them. SoftHSM2 serialises much of its work, so 2 workers gain\nlittle on it; an HSM with parallel cores gains more.\n\n",
    );

    // Per-card key sets: the batch's work per card against the same token calls in a bare loop.
    md.push_str(&format!(
        "## Per-card key sets on SoftHSM2 ({cards} cards per run)\n\nOne key set = ENC, MAC, DEK derived in the token (emv, `CKM_DES3_ECB_ENCRYPT_DATA`), their KCVs, and each wrapped under the card's DEK (AES-CBC) for PUT KEY.\n\n| workers | signer (key sets/s) | bare loop of the same calls (key sets/s) | ratio |\n|---|---|---|---|\n"
    ));
    // Warm up the token.
    rate(&session, 1, 200, &|s, i| {
        black_box(
            derive_card_keys(
                s,
                kmc,
                Scheme::Emv,
                &kdd(i),
                SecretKeyType::Aes128,
                Purpose::PutKey,
            )
            .unwrap(),
        );
    });
    let signer_keyset = |s: &TokenSession<'_>, i: u64| {
        let keys = derive_card_keys(
            s,
            kmc,
            Scheme::Emv,
            &kdd(i),
            SecretKeyType::Aes128,
            Purpose::PutKey,
        )
        .unwrap();
        black_box(signer::gp::put_key_apdu(s, tk, &keys, 0x30, 0x31).unwrap());
    };
    let bare_keyset = |s: &TokenSession<'_>, i: u64| {
        let k = kdd(i);
        for role in gp_core::diversify::KeyRole::ALL {
            let data = gp_core::diversify::derivation_data(Scheme::Emv, &k, role).unwrap();
            let key = s
                .derive_by_encryption(kmc, &data, SecretKeyType::Aes128, &[Usage::Encrypt], true)
                .unwrap();
            black_box(s.kcv(key.handle()).unwrap());
            black_box(s.wrap_cbc_zero_iv(tk, key.handle()).unwrap());
        }
    };
    for workers in [1usize, 2] {
        // Interleaved rounds, best of each: the machine is shared, and SoftHSM2 slows a little as it
        // accumulates objects, so neither side may always run first or alone.
        let (mut bare, mut ours) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            bare = bare.max(rate(&session, workers, cards, &bare_keyset));
            ours = ours.max(rate(&session, workers, cards, &signer_keyset));
        }
        md.push_str(&format!(
            "| {workers} | {ours:.0} | {bare:.0} | {:.2} |\n",
            ours / bare
        ));
    }

    // Per-card DAPs.
    md.push_str(&format!(
        "\n## Per-card DAPs on SoftHSM2 ({cards} cards per run)\n\nOne DAP = the card's AES DAP key derived in the token (scheme aes) and an AES-CMAC over the SHA-256 LFDB hash.\n\n| workers | signer (DAPs/s) | bare loop of the same calls (DAPs/s) | ratio |\n|---|---|---|---|\n"
    ));
    let hash = sha2::Sha256::digest(b"load file").to_vec();
    let bare_dap = |s: &TokenSession<'_>, i: u64| {
        let data =
            signer::diversify::dap_derivation_data(Scheme::Aes, &kdd(i), SecretKeyType::Aes128)
                .unwrap();
        let key = s
            .derive_by_encryption(dap, &data, SecretKeyType::Aes128, &[Usage::Sign], false)
            .unwrap();
        black_box(s.aes_cmac(key.handle(), &hash).unwrap());
    };
    for workers in [1usize, 2] {
        let (mut bare, mut ours) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            ours = ours.max(dap_rate(&session, workers, cards, &hash));
            bare = bare.max(rate(&session, workers, cards, &bare_dap));
        }
        md.push_str(&format!(
            "| {workers} | {ours:.0} | {bare:.0} | {:.2} |\n",
            ours / bare
        ));
    }

    // LFDB hashing.
    md.push_str("\n## LFDB hashing and signing\n\n| load file | `gp_core::dap::lfdb_hash` SHA-256 (MB/s) | `sha2` alone (MB/s) | ratio | hash + AES DAP in the token (MB/s) |\n|---|---|---|---|---|\n");
    for mb in [1usize, 16] {
        let data: Vec<u8> = (0..mb * 1024 * 1024)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let runs = if mb == 1 { 40 } else { 4 };
        let (mut ours, mut bare) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..runs {
                black_box(gp_core::dap::lfdb_hash(
                    gp_core::dap::HashAlg::Sha256,
                    &data,
                ));
            }
            ours = ours.max((mb * runs) as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..runs {
                black_box(sha2::Sha256::digest(&data));
            }
            bare = bare.max((mb * runs) as f64 / t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        for _ in 0..runs {
            let h = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha256, &data);
            black_box(session.aes_cmac(dap, &h).unwrap());
        }
        let signed = (mb * runs) as f64 / t.elapsed().as_secs_f64();
        md.push_str(&format!(
            "| {mb} MB | {ours:.0} | {bare:.0} | {:.2} | {signed:.0} |\n",
            ours / bare
        ));
    }

    // A whole batch: peak memory must not grow with the number of cards.
    md.push_str(
        "\n## Personalisation batch memory\n\n`signer batch` over a generated card list, default transport key, 2 workers, the default\n`--chunk 50000` (SoftHSM2 keeps every session object in the process until it ends, so long lists run as\nchild processes of 50,000 cards); peak RSS is the largest `VmHWM` a batch process printed in its progress lines.\n\n| cards | time (s) | key sets/s | peak RSS (MB) |\n|---|---|---|---|\n",
    );
    let signer_bin = env!("CARGO_BIN_EXE_signer");
    for n in [10_000u64, batch_cards] {
        let list = store.path(&format!("cards-{n}.csv"));
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
            writeln!(f, "identity,kdd").unwrap();
            for i in 0..n {
                writeln!(f, "card-{i:08},{}", hex::encode_upper(kdd(i))).unwrap();
            }
        }
        let out = store.path(&format!("keys-{n}.jsonl"));
        session
            .generate_secret(&spec(
                &format!("isd-{n}"),
                10 + (n % 200) as u8,
                SecretKeyType::Des3TwoKey,
                vec![Usage::Derive],
            ))
            .unwrap();
        let t = Instant::now();
        let run = std::process::Command::new(signer_bin)
            .env("SOFTHSM2_CONF", store.conf())
            .env(PIN_VAR, &store.pin)
            .args(["batch", "--cards"])
            .arg(&list)
            .args([
                "--master",
                &format!("pkcs11:token=perf;object=isd-{n}"),
                "--workers",
                "2",
                "--pin-source",
                &format!("env:{PIN_VAR}"),
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let secs = t.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let peak = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["peak_rss_kb"].as_u64())
            .max()
            .unwrap_or(0) as f64
            / 1024.0;
        md.push_str(&format!(
            "| {n} | {secs:.0} | {:.0} | {peak:.1} |\n",
            n as f64 / secs
        ));
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&list);
    }
    md.push('\n');
    md.push_str(&nss_section(cards));
    std::fs::write(&path, &md).unwrap();
    print!("{md}");
}

/// Work done for one card, on any worker's session.
type PerCard<'a> = dyn Fn(&TokenSession<'_>, u64) + Sync + 'a;

/// The heading of the NSS softokn section, which `PERF_SECTION=nss` rewrites alone.
const NSS_HEADING: &str = "## On NSS softokn";

/// Tables for NSS softokn (the second PKCS#11 implementation): kdf3 key sets and per-card DAPs, which
/// SoftHSM2 cannot derive, and SCP03 session setups with the session keys in the token against the host
/// way on the same token.
fn nss_section(cards: u64) -> String {
    use gp_core::scp03;
    use keyman::hsm::register_module_init;
    use postissue_tests::{NssDb, NSS_MODULE, NSS_TOKEN};
    let db = NssDb::new();
    register_module_init(std::path::Path::new(NSS_MODULE), &db.init_string()).unwrap();
    let hsm = Hsm::load(Some(std::path::Path::new(NSS_MODULE))).unwrap();
    std::env::set_var("PERF_NSS_PIN", &db.pin);
    let session = hsm
        .open(
            &TokenUri::parse(NSS_TOKEN).unwrap(),
            &PinSource::Env("PERF_NSS_PIN".into()),
        )
        .unwrap();
    let value = keyman::secret::KeyValue::new(
        zeroize::Zeroizing::new(session.random(16).unwrap()),
        SecretKeyType::Aes128,
    )
    .unwrap();
    let (master, _) = session
        .create_secret_from_value(
            &SecretKeySpec {
                label: "kdf3-master".into(),
                id: vec![1],
                key_type: SecretKeyType::Aes128,
                usages: vec![Usage::Derive],
                extractable: false,
            },
            &value,
        )
        .unwrap();
    let mut md = format!(
        "{NSS_HEADING}\n\nNSS softokn 3.87 (Debian `libnss3`), token `{NSS_TOKEN}`, {cards} cards per run, best of {ROUNDS} rounds.\n\n"
    );
    md.push_str("| work per card | 1 worker (/s) | 2 workers (/s) |\n|---|---|---|\n");
    let hash = sha2::Sha256::digest(b"load file").to_vec();
    let keyset = |s: &TokenSession<'_>, i: u64| {
        let keys = derive_card_keys(
            s,
            master,
            Scheme::Kdf3,
            &kdd(i),
            SecretKeyType::Aes128,
            Purpose::Check,
        )
        .unwrap();
        for k in [&keys.enc, &keys.mac, &keys.dek] {
            black_box(s.kcv(k.handle()).unwrap());
        }
    };
    let dap = |s: &TokenSession<'_>, i: u64| match signer::diversify::derive_dap_key(
        s,
        master,
        Scheme::Kdf3,
        &kdd(i),
        true,
    )
    .unwrap()
    {
        signer::diversify::CardDapKey::Aes(k) => {
            black_box(s.aes_cmac(k.handle(), &hash).unwrap());
        }
        signer::diversify::CardDapKey::Des(..) => unreachable!("kdf3 gives AES keys"),
    };
    // One SCP03 session setup: S-ENC, S-MAC, S-RMAC and the card cryptogram.
    let context = [0x5Au8; 16];
    let in_token = |s: &TokenSession<'_>, _i: u64| {
        let mut label = vec![0u8; 11];
        label.extend_from_slice(&[scp03::S_ENC, 0, 0, 128]);
        for constant in [scp03::S_ENC, scp03::S_MAC, scp03::S_RMAC] {
            label[11] = constant;
            let usages: &[Usage] = if constant == scp03::S_ENC {
                &[Usage::Encrypt, Usage::Decrypt]
            } else {
                &[Usage::Sign]
            };
            let k = s
                .derive_counter_kdf(
                    master,
                    &label,
                    &context,
                    SecretKeyType::Aes128,
                    usages,
                    false,
                )
                .unwrap();
            if constant == scp03::S_MAC {
                let mut input = vec![0u8; 11];
                input.extend_from_slice(&[scp03::CARD_CRYPTOGRAM, 0, 0, 64, 1]);
                input.extend_from_slice(&context);
                black_box(s.aes_cmac(k.handle(), &input).unwrap());
            }
        }
    };
    struct Cmac<'a, 'h>(&'a TokenSession<'h>, KeyHandle);
    impl scp03::Prf for Cmac<'_, '_> {
        type Error = keyman::Error;
        fn cmac(&mut self, data: &[u8]) -> Result<[u8; 16], keyman::Error> {
            self.0.aes_cmac(self.1, data)
        }
    }
    let (cmac_key, _) = session
        .create_secret_from_value(
            &SecretKeySpec {
                label: "static".into(),
                id: vec![2],
                key_type: SecretKeyType::Aes128,
                usages: vec![Usage::Sign],
                extractable: false,
            },
            &value,
        )
        .unwrap();
    let host = |s: &TokenSession<'_>, _i: u64| {
        let (hc, cc) = context.split_at(8);
        let keys = scp03::derive_session_keys(
            &mut Cmac(s, cmac_key),
            &mut Cmac(s, cmac_key),
            16,
            hc.try_into().unwrap(),
            cc.try_into().unwrap(),
        )
        .unwrap();
        black_box(scp03::card_cryptogram(
            &keys,
            hc.try_into().unwrap(),
            cc.try_into().unwrap(),
        ));
    };
    let rows: [(&str, &PerCard<'_>); 4] = [
        ("kdf3 key set: ENC, MAC, DEK by `CKM_SP800_108_COUNTER_KDF` and their KCVs", &keyset),
        ("kdf3 per-card DAP: the card's DAP key derived, AES-CMAC over the LFDB hash", &dap),
        ("SCP03 session setup, in-token way: 3 session keys by SP 800-108, card cryptogram by the token", &in_token),
        ("SCP03 session setup, host way: 3 KDF CMACs in the token, keys and cryptogram on the host", &host),
    ];
    for (what, work) in rows {
        let mut best = [0f64; 2];
        for _ in 0..ROUNDS {
            for (slot, workers) in best.iter_mut().zip([1usize, 2]) {
                *slot = slot.max(rate(&session, workers, cards, work));
            }
        }
        md.push_str(&format!("| {what} | {:.0} | {:.0} |\n", best[0], best[1]));
    }
    md.push_str(
        "\nA second worker lowers the rate on NSS softokn here (it serialises work on its objects, and the machine\nis shared), so NSS runs are best given one worker.\nThe in-token SCP03 way costs a little more per session than the host way on the same token: the price of never holding a session key on the host.\n",
    );
    md
}

/// `signer package`'s per-card path: the DAP key opened once per worker (as once per package), then a
/// derived key and a CMAC per card; returns DAPs per second.
fn dap_rate(session: &TokenSession<'_>, workers: usize, cards: u64, hash: &[u8]) -> f64 {
    let sessions: Vec<_> = (0..workers)
        .map(|_| session.another_session().unwrap())
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, sess) in sessions.into_iter().enumerate() {
            s.spawn(move || {
                let key = signer::dap::DapKey::open(
                    &sess,
                    signer::dap::DapKind::Aes,
                    "dap",
                    Some(Scheme::Aes),
                )
                .unwrap();
                let mut i = w as u64;
                while i < cards {
                    black_box(key.sign_for_card(&kdd(i), hash).unwrap());
                    i += workers as u64;
                }
            });
        }
    });
    cards as f64 / start.elapsed().as_secs_f64()
}
