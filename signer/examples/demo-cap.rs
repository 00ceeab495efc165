//! Writes the demo application's CAP file, so the demo needs no file from outside the repository.
//!
//! Usage: `demo-cap OUT.cap` (never overwrites). The AIDs are the constants below.

use std::process::ExitCode;

/// The demo load file (package) AID.
const PACKAGE_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x06, 0x47, 0x50, 0x49, 0x01];
/// The demo applet AID.
const APPLET_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x06, 0x47, 0x50, 0x49, 0x01, 0x01];

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: demo-cap OUT.cap");
        return ExitCode::from(2);
    };
    let bytes = signer::cap::build_demo_cap(&PACKAGE_AID, &APPLET_AID, "com/postissue/hello");
    let path = std::path::PathBuf::from(out);
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut f) => match std::io::Write::write_all(&mut f, &bytes) {
            Ok(()) => {
                println!(
                    "{}: package {} applet {} ({} bytes)",
                    path.display(),
                    hex::encode_upper(PACKAGE_AID),
                    hex::encode_upper(APPLET_AID),
                    bytes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("demo-cap: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("demo-cap: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
