//! The independent DKIM verifier (dkimpy, with PyNaCl for Ed25519). When the system's
//! python3 lacks them, they are installed once into a virtual environment inside the build
//! directory, so the README's one test command works on a fresh machine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

static PYTHON: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A python interpreter that can `import dkim, nacl`.
pub fn python() -> PathBuf {
    let mut cached = PYTHON.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(python) = cached.as_ref() {
        return python.clone();
    }
    let python = find_or_install();
    *cached = Some(python.clone());
    python
}

fn has_modules(python: &std::path::Path) -> bool {
    Command::new(python)
        .args(["-c", "import dkim, nacl"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_or_install() -> PathBuf {
    let system = PathBuf::from("python3");
    if has_modules(&system) {
        return system;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let venv = target.join("dkim-verifier-venv");
    let python = venv.join("bin").join("python3");
    if has_modules(&python) {
        return python;
    }
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .expect("run python3 (the DKIM verifier needs it)");
        assert!(
            out.status.success(),
            "installing the DKIM verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "dkimpy",
        "pynacl",
    ]));
    assert!(
        has_modules(&python),
        "dkimpy and pynacl still missing in {}",
        venv.display()
    );
    python
}

/// Verifies every DKIM signature of `message` for `domain` with dkimpy, against the TXT records
/// `postern domain dns` prints. `Ok(report)` when all verify.
pub async fn verify_dkim(
    server: &crate::harness::TestServer,
    message: &[u8],
    domain: &str,
) -> Result<String, String> {
    verify(server, message, domain, false).await
}

/// [`verify_dkim`], and the ARC chain must validate too (dkimpy's `arc_verify`, cv=pass).
pub async fn verify_dkim_and_arc(
    server: &crate::harness::TestServer,
    message: &[u8],
    domain: &str,
) -> Result<String, String> {
    verify(server, message, domain, true).await
}

async fn verify(
    server: &crate::harness::TestServer,
    message: &[u8],
    domain: &str,
    arc: bool,
) -> Result<String, String> {
    use postern::cli::{Command as Cli, DomainCommand};
    // The keys of every domain the server signs for: a chain may hold several.
    let mail = &server.settings.mail;
    let mut domains = mail.alias_domains.clone();
    domains.push(mail.reply_domain.clone());
    let mut dns = String::new();
    for d in domains {
        dns.push_str(
            &server
                .cli(Cli::Domain(DomainCommand::Dns { domain: d }))
                .await?,
        );
    }
    let mut args = Vec::new();
    for line in dns.lines().filter(|l| l.contains("._domainkey.")) {
        let (name, rest) = line
            .split_once(". IN TXT ")
            .ok_or_else(|| format!("not a TXT line: {line}"))?;
        let value: String = rest.split('"').skip(1).step_by(2).collect();
        args.push("--txt".to_string());
        args.push(format!("{name}={value}"));
    }
    let eml = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(eml.path(), message).map_err(|e| e.to_string())?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/dkim_verify.py");
    let out = Command::new(python())
        .arg(script)
        .arg(eml.path())
        .args(&args)
        .arg("--domain")
        .arg(domain)
        .args(arc.then_some("--arc"))
        .output()
        .map_err(|e| format!("run dkim_verify.py: {e}"))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}
