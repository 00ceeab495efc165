//! Writes the demo application's CAP file, so the demo needs no file from outside the repository.
//!
//! Usage: `demo-cap OUT.cap` (never overwrites). The AIDs are the constants below.

use std::io::Write;
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
    let path = std::path::PathBuf::from(out);
    let written = signer::cap::build_demo_cap(&PACKAGE_AID, &APPLET_AID, "com/postissue/hello")
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(bytes.len())
        });
    match written {
        Ok(len) => {
            println!(
                "{}: package {} applet {} ({len} bytes)",
                path.display(),
                hex::encode_upper(PACKAGE_AID),
                hex::encode_upper(APPLET_AID),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo-cap: {e}");
            ExitCode::FAILURE
        }
    }
}
