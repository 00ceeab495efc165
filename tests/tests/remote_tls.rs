//! The admin server behind TLS: device agents with certificate TLS (the server's certificate checked
//! against the CA the agent is given), agents keyed like cards with PSK-TLS 1.2 and either SCP81 suite
//! (`TLS_PSK_WITH_AES_128_GCM_SHA256`, `TLS_PSK_WITH_AES_128_CBC_SHA256`). A wrong PSK, an untrusted
//! server certificate and a PSK file others can read each stop the agent with one clear line.

mod common;
mod remote_common;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use postissue_tests::{fails, ok, run};
use remote_common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn cert(cn: &str, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> (X509, PKey<Private>) {
    let key = PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(
        &BigNum::from_u32(rand_serial())
            .unwrap()
            .to_asn1_integer()
            .unwrap(),
    )
    .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(&key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    (b.build(), key)
}

fn rand_serial() -> u32 {
    let mut b = [0u8; 4];
    openssl::rand::rand_bytes(&mut b).unwrap();
    u32::from_be_bytes(b) >> 1
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn certificate_and_psk_agents_install_and_bad_credentials_stop_with_one_line() {
    let w = World::new();
    let dir = w.hsm.dir.path();
    let (ca, ca_key) = cert("Postissue test CA", None, true);
    let (leaf, leaf_key) = cert("localhost", Some((&ca, &ca_key)), false);
    std::fs::write(dir.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf.to_pem().unwrap()).unwrap();
    private_file(
        &dir.join("server.key"),
        &String::from_utf8(leaf_key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    );
    let (other_ca, _) = cert("Someone else", None, true);
    std::fs::write(dir.join("other-ca.pem"), other_ca.to_pem().unwrap()).unwrap();
    private_file(&dir.join("psk1.hex"), "000102030405060708090A0B0C0D0E0F\n");
    private_file(&dir.join("wrong.hex"), "0F0E0D0C0B0A09080706050403020100\n");

    let port = free_port();
    let config = write_config(
        dir,
        "tls.ron",
        port,
        Some(
            r#"(certificate: Some((chain: "server.pem", key: "server.key")),
                psk: [(identity: "agent-psk-1", key_file: "psk1.hex")])"#,
        ),
    );
    let a = w.card("a", KDD_A);
    let b = w.card("b", KDD_B);
    let c = w.card("c", KDD_C);
    std::fs::write(
        w.p("three.csv"),
        format!("identity,kdd\na,{KDD_A}\nb,{KDD_B}\nc,{KDD_C}\n"),
    )
    .unwrap();
    ok(&mut w.package("plain.pkg", &[]));
    campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "tls",
            "--package",
            &w.p("plain.pkg"),
            "--cards",
            &w.p("three.csv"),
        ],
    );
    let server = ServerProc::start(&w.hsm, &config);
    assert!(
        server.banner.contains("certificate, 1 PSK identities"),
        "{}",
        server.banner
    );
    let url = format!("https://localhost:{port}/admin");
    let agent_cmd = |image: &str| {
        let mut cmd = w.hsm.tool("admin-agent");
        cmd.env("ADMIN_LOG", "warn");
        cmd.args([
            "--server",
            &url,
            "--card",
            &format!("sim:{image}"),
            "--retries",
            "1",
        ])
        .args(["--backoff-ms", "50"]);
        cmd
    };

    // Certificate TLS, the server's certificate checked against the CA and the host name.
    let out = run(agent_cmd(&a)
        .env("ADMIN_LOG", "info")
        .args(["--ca-cert", &format!("{}", dir.join("ca.pem").display())]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: 2 script(s)"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLSv1.3"));
    // A server certificate from another CA: one line, nothing sent.
    let err = fails(agent_cmd(&b).args([
        "--ca-cert",
        &format!("{}", dir.join("other-ca.pem").display()),
    ]));
    assert!(
        err.contains("TLS") && err.contains("certificate verify failed"),
        "{err}"
    );

    // PSK-TLS 1.2, GCM suite (the agent's first choice).
    let psk = format!("{}", dir.join("psk1.hex").display());
    let out = run(agent_cmd(&b).env("ADMIN_LOG", "info").args([
        "--psk-identity",
        "agent-psk-1",
        "--psk-file",
        &psk,
    ]));
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("TLSv1.2 PSK-AES128-GCM-SHA256"), "{log}");

    // The wrong key, an unknown identity, a PSK file others can read: one line each.
    let wrong = format!("{}", dir.join("wrong.hex").display());
    let err = fails(agent_cmd(&c).args(["--psk-identity", "agent-psk-1", "--psk-file", &wrong]));
    assert!(err.contains("TLS"), "{err}");
    let err = fails(agent_cmd(&c).args(["--psk-identity", "nobody", "--psk-file", &psk]));
    assert!(err.contains("TLS"), "{err}");
    std::fs::set_permissions(dir.join("psk1.hex"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(agent_cmd(&c).args(["--psk-identity", "agent-psk-1", "--psk-file", &psk]));
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(dir.join("psk1.hex"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // PSK-TLS 1.2 with the CBC suite only (TLS_PSK_WITH_AES_128_CBC_SHA256), agent in-process.
    let mut b2 =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b2.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
        .unwrap();
    b2.set_cipher_list("PSK-AES128-CBC-SHA256").unwrap();
    b2.set_verify(openssl::ssl::SslVerifyMode::NONE);
    b2.set_psk_client_callback(|_, _, id, key| {
        id[..12].copy_from_slice(b"agent-psk-1\0");
        key[..16].copy_from_slice(&hex::decode("000102030405060708090A0B0C0D0E0F").unwrap());
        Ok(16)
    });
    let mut cfg = agent(port);
    cfg.server = url.parse().unwrap();
    cfg.tls = remote::tls::ClientTls::Psk(b2.build());
    let mut card = signer::transport::SimTransport::open(Path::new(&c)).unwrap();
    assert_eq!(cfg.run(&mut card).unwrap().scripts, 2);

    let show = campaign(&w.hsm, &config, &["show", "tls"]);
    assert!(
        rows(&show).iter().all(|r| r.2 == "done" && r.3 == 1),
        "{show}"
    );
    for image in [&a, &b, &c] {
        assert_eq!(count_entries(&w.registry(image), "APP", APPLET), 1);
    }
}
