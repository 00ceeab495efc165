//! The campaign database on a real PostgreSQL cluster (initdb'd for the test): the same migrations as
//! SQLite, instances racing to claim cards get each card exactly once, a dead instance's lease runs out
//! and another takes the card over while the dead one is fenced out, and a restarted database is
//! reconnected to.

use postissue_tests::postgres::PgCluster;
use remote::db::{CardState, Claim, Db, Instance, MIGRATIONS};
use remote::plan::InstallSettings;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn kdd(i: usize) -> [u8; 10] {
    let mut k = [0x5Au8; 10];
    k[8..].copy_from_slice(&u16::try_from(i).unwrap().to_be_bytes());
    k
}

fn open(pg: &PgCluster, id: &str, lease: Duration) -> Db {
    let mut db = Db::open(Path::new(&pg.url())).unwrap();
    db.register_instance(id, id, None, lease).unwrap();
    db
}

#[test]
fn postgres_claims_leases_fencing_and_a_database_restart() {
    let pg = PgCluster::start("fleet", false);
    // Two instances starting at once both migrate safely; the schema is complete once.
    let url = pg.url();
    let openers: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Db::open(Path::new(&url)).map(|_| ()))
        })
        .collect();
    for o in openers {
        o.join().unwrap().unwrap();
    }
    let mut a = open(&pg, "a", Duration::from_millis(400));
    assert_eq!(
        a.schema_version().unwrap(),
        i64::try_from(MIGRATIONS.len()).unwrap()
    );
    const N: usize = 40;
    let cards: Vec<(String, [u8; 10])> = (0..N).map(|i| (format!("card-{i}"), kdd(i))).collect();
    let settings = InstallSettings {
        sd_aid: Some(vec![0xA0, 0, 0, 0, 0x51]),
        privileges: vec![0],
        install_parameters: vec![0xC9, 0],
    };
    a.add_campaign("fleet", b"package", "00", &settings, &cards)
        .unwrap();
    assert!(a.add_campaign("fleet", b"p", "00", &settings, &[]).is_err());
    let listed: Vec<String> = a
        .cards("fleet")
        .unwrap()
        .into_iter()
        .map(|c| c.identity)
        .collect();
    assert_eq!(
        listed,
        cards.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        "list order kept"
    );

    // Four instances race for every card: each card is claimed by exactly one of them.
    let racers: Vec<Arc<Db>> = (0..4)
        .map(|i| Arc::new(open(&pg, &format!("r{i}"), Duration::from_secs(60))))
        .collect();
    let handles: Vec<_> = racers
        .iter()
        .map(|db| {
            let db = db.clone();
            std::thread::spawn(move || {
                (0..N)
                    .filter(|i| match db.claim(&kdd(*i)).unwrap() {
                        Claim::Work(w) => {
                            assert_eq!(w.package, b"package");
                            assert_eq!(w.settings.install_parameters, vec![0xC9, 0]);
                            true
                        }
                        Claim::Busy { .. } => false,
                        Claim::Nothing => panic!("card {i} has work"),
                    })
                    .count()
            })
        })
        .collect();
    let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(won, N, "every card claimed exactly once");
    let alive: Vec<Instance> = a.instances().unwrap();
    assert_eq!(alive.iter().filter(|i| i.alive).count(), 5, "{alive:?}");

    // Instance "a" with a short lease claims a fresh card and dies; "b" takes it over once the lease
    // runs out, and a's late step is refused.
    a.add_campaign("second", b"p2", "00", &settings, &[("x".into(), kdd(900))])
        .unwrap();
    let Claim::Work(w) = a.claim(&kdd(900)).unwrap() else {
        panic!("a claims")
    };
    a.set_card(
        w.card.campaign_id,
        &w.card.kdd,
        CardState::InFlight,
        None,
        true,
    )
    .unwrap();
    let b = open(&pg, "b", Duration::from_secs(60));
    assert!(matches!(b.claim(&kdd(900)).unwrap(), Claim::Busy { ref owner } if owner == "a"));
    std::thread::sleep(Duration::from_millis(600));
    let Claim::Work(w) = b.claim(&kdd(900)).unwrap() else {
        panic!("b takes over")
    };
    assert_eq!((w.card.state, w.card.attempts), (CardState::InFlight, 1));
    assert!(a
        .set_card(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::Done,
            None,
            false
        )
        .is_err());
    b.set_card(
        w.card.campaign_id,
        &w.card.kdd,
        CardState::Done,
        None,
        false,
    )
    .unwrap();
    assert_eq!(b.cards("second").unwrap()[0].state, CardState::Done);
    assert!(b
        .campaigns()
        .unwrap()
        .iter()
        .any(|c| c.name == "second" && c.counts == [0, 0, 1, 0]));

    // The database restarts under the open connections: the first call may fail, then every call
    // works again on a fresh connection, and nothing committed is lost.
    pg.restart();
    let mut worked = false;
    for _ in 0..20 {
        if b.campaigns().is_ok() {
            worked = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(worked, "no reconnection after the restart\n{}", pg.log());
    assert_eq!(b.cards("second").unwrap()[0].state, CardState::Done);
    assert_eq!(b.cards("fleet").unwrap().len(), N);
}

#[test]
fn a_version_2_postgres_database_is_migrated_and_keeps_its_campaigns() {
    let pg = PgCluster::start("fleet", false);
    let url = pg.create_database("old");
    // The schema an older server left: migrations 1 and 2, its version recorded, one campaign.
    pg.psql(
        "old",
        &format!(
            "BEGIN; {} {} CREATE TABLE schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version VALUES (2);
             INSERT INTO campaigns (name, state, package, package_sha256) VALUES ('old', 'active', '\\x00', '00');
             INSERT INTO cards (campaign_id, identity, kdd, state) SELECT id, 'a', '01010101010101010101', 'pending' FROM campaigns;
             COMMIT;",
            MIGRATIONS[0].postgres, MIGRATIONS[1].postgres
        ),
    );
    let mut db = Db::open(Path::new(&url)).unwrap();
    assert_eq!(
        db.schema_version().unwrap(),
        i64::try_from(MIGRATIONS.len()).unwrap()
    );
    db.register_instance("i", "i", None, Duration::from_secs(5))
        .unwrap();
    let Claim::Work(w) = db.claim(&[1u8; 10]).unwrap() else {
        panic!("the old campaign's card has work")
    };
    assert_eq!(w.card.campaign, "old");
    assert_eq!(w.settings, InstallSettings::default());
    // A schema newer than this server is refused.
    pg.psql("old", "UPDATE schema_version SET version = 99");
    assert!(Db::open(Path::new(&url)).is_err());
}
