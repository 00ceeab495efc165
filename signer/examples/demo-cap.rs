//! Writes the demo application's CAP file, so the demo needs no file from outside the repository.
//!
//! Usage: `demo-cap OUT.cap [PACKAGE-AID APPLET-AID]` (never overwrites). Without AIDs the demo's own
//! (the constants below); with them, a second application (a vendor's) that can be loaded beside the first.

use std::io::Write;
use std::process::ExitCode;

/// The demo load file (package) AID.
const PACKAGE_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x06, 0x47, 0x50, 0x49, 0x01];
/// The demo applet AID.
const APPLET_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x06, 0x47, 0x50, 0x49, 0x01, 0x01];

const USAGE: &str = "usage: demo-cap OUT.cap [PACKAGE-AID APPLET-AID]";

/// An AID from the command line: hex, 5 to 16 bytes.
fn aid(text: &str) -> Result<Vec<u8>, String> {
    let b = hex::decode(text).map_err(|_| format!("'{text}' is not hex"))?;
    if (5..=16).contains(&b.len()) {
        Ok(b)
    } else {
        Err(format!("'{text}': an AID has 5 to 16 bytes"))
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let aids = match rest.as_slice() {
        [] => Ok((PACKAGE_AID.to_vec(), APPLET_AID.to_vec())),
        [p, a] => aid(p).and_then(|p| Ok((p, aid(a)?))),
        _ => Err(USAGE.to_string()),
    };
    let (package_aid, applet_aid) = match aids {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo-cap: {e}");
            return ExitCode::from(2);
        }
    };
    let path = std::path::PathBuf::from(out);
    let written = signer::cap::build_demo_cap(&package_aid, &applet_aid, "com/postissue/hello")
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
                hex::encode_upper(&package_aid),
                hex::encode_upper(&applet_aid),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo-cap: {e}");
            ExitCode::FAILURE
        }
    }
}
