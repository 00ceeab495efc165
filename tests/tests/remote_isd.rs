//! Remote delivery through the card domain over plain HTTP on loopback: a campaign installs a package on
//! each card with the opening POST, two scripts and a 204; a card whose keys do not match is marked
//! failed after one attempt without EXTERNAL AUTHENTICATE ever being sent; a card in no campaign, a
//! paused campaign and a card already done get a 204 and nothing changes.

mod common;
mod remote_common;

use common::*;
use postissue_tests::ok;
use remote_common::*;

#[test]
fn a_campaign_installs_through_the_card_domain_and_wrong_keys_fail_once() {
    let w = World::new();
    let port = free_port();
    let config = write_config(w.hsm.dir.path(), "server.ron", port, None);
    // Cards A and B are personalised with the issuer's keys; card W still has its fab transport keys.
    let a = w.card("a", KDD_A);
    let b = w.card("b", KDD_B);
    let wrong = w.p("w.img");
    ok(w.hsm
        .tool("card-sim")
        .args(["new", "--image", &wrong, "--kdd", KDD_C]));
    std::fs::write(
        w.p("campaign.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\ncard-b,{KDD_B}\ncard-w,{KDD_C}\n"),
    )
    .unwrap();
    ok(&mut w.package("plain.pkg", &[]));
    let added = campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "isd",
            "--package",
            &w.p("plain.pkg"),
            "--cards",
            &w.p("campaign.csv"),
        ],
    );
    assert!(
        added.contains("3 cards") && added.contains("security domain ISD"),
        "{added}"
    );
    let _server = ServerProc::start(&w.hsm, &config);

    for image in [&a, &b] {
        let mut card = signer::transport::SimTransport::open(std::path::Path::new(image)).unwrap();
        let s = agent(port).run(&mut card).unwrap();
        // One install: the identification script and the operation script, nothing resumed.
        assert_eq!((s.scripts, s.resumes), (2, 0), "{s:?}");
        let reg = w.registry(image);
        assert_eq!(count_entries(&reg, "APP", APPLET), 1, "{reg}");
        // Calling again: identified, nothing to do.
        let mut card = signer::transport::SimTransport::open(std::path::Path::new(image)).unwrap();
        let again = agent(port).run(&mut card).unwrap();
        assert_eq!((again.scripts, again.apdus), (1, 3), "{again:?}");
        assert_eq!(w.registry(image), reg);
    }

    // The card with other keys: identified, its cryptogram refused, no EXTERNAL AUTHENTICATE sent.
    for _ in 0..2 {
        let mut card = signer::transport::SimTransport::open(std::path::Path::new(&wrong)).unwrap();
        let s = agent(port).run(&mut card).unwrap();
        assert_eq!((s.scripts, s.apdus), (1, 3), "{s:?}");
    }
    let show = campaign(&w.hsm, &config, &["show", "isd"]);
    let rows = rows(&show);
    assert_eq!(rows.len(), 3, "{show}");
    for (id, _, state, attempts, reason) in &rows {
        match id.as_str() {
            "card-w" => {
                assert_eq!((state.as_str(), *attempts), ("failed", 1), "{show}");
                assert!(
                    reason.contains("cryptogram") && reason.contains("not sent"),
                    "{show}"
                );
            }
            _ => assert_eq!(
                (state.as_str(), *attempts, reason.as_str()),
                ("done", 1, "-"),
                "{show}"
            ),
        }
    }
    let list = campaign(&w.hsm, &config, &["list"]);
    assert!(list.contains("isd active 0 0 2 1"), "{list}");

    // A card in no campaign gets a 204 after identification.
    let stranger = w.card("s", "0B0C0D0E0F1011121314");
    let mut card = signer::transport::SimTransport::open(std::path::Path::new(&stranger)).unwrap();
    assert_eq!(agent(port).run(&mut card).unwrap().scripts, 1);
    assert_eq!(count_entries(&w.registry(&stranger), "APP", APPLET), 0);

    // A paused campaign starts no card. This one gives its application the Card Lock privilege and
    // application-specific install parameters.
    std::fs::write(
        w.p("later.csv"),
        "identity,kdd\ncard-s,0B0C0D0E0F1011121314\n",
    )
    .unwrap();
    let (pkg, csv) = (w.p("plain.pkg"), w.p("later.csv"));
    let later = ["add", "later", "--package", &pkg, "--cards", &csv];
    for bad in [["--privileges", "1000"], ["--install-params", "EF00"]] {
        let err = postissue_tests::fails(
            w.hsm
                .tool("admin-server")
                .args(["campaign", "--config"])
                .arg(&config)
                .args(later)
                .args(bad),
        );
        assert!(err.contains(bad[0]), "{err}");
    }
    let added = campaign(
        &w.hsm,
        &config,
        &[
            &later[..],
            &["--privileges", "100000", "--install-params", "C9020102"],
        ]
        .concat(),
    );
    assert!(
        added.contains("privileges 100000, install parameters C9020102"),
        "{added}"
    );
    campaign(&w.hsm, &config, &["pause", "later"]);
    let mut card = signer::transport::SimTransport::open(std::path::Path::new(&stranger)).unwrap();
    assert_eq!(agent(port).run(&mut card).unwrap().scripts, 1);
    assert!(campaign(&w.hsm, &config, &["show", "later"]).contains("pending 0"));
    campaign(&w.hsm, &config, &["resume", "later"]);
    let mut card = signer::transport::SimTransport::open(std::path::Path::new(&stranger)).unwrap();
    assert_eq!(agent(port).run(&mut card).unwrap().scripts, 2);
    let reg = w.registry(&stranger);
    assert_eq!(count_entries(&reg, "APP", APPLET), 1);
    assert!(
        reg.lines()
            .any(|l| l.starts_with("APP") && l.contains(APPLET) && l.contains("privileges 100000")),
        "{reg}"
    );

    // Every install is in the ledger, whose chain verifies and whose head the issuer's token anchors.
    let verified = verify_remote_ledger(&w.hsm, w.hsm.dir.path());
    assert!(verified.contains("3 entries, chain intact"), "{verified}");
    assert!(
        verified.contains("anchor      token 'issuer' holds this head"),
        "{verified}"
    );
}
