//! Stamps the binary with its git revision, branch, build user and date, for `--version` and
//! build_info.
use std::process::Command;

fn main() {
    // Builds without a .git (a container build context) can pass the revision in.
    let revision = std::env::var("WHATSAPP_EXPORTER_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| run(Command::new("git").args(["rev-parse", "--short=12", "HEAD"])))
        .unwrap_or_else(|| "unknown".into());
    let branch = std::env::var("WHATSAPP_EXPORTER_BRANCH")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| run(Command::new("git").args(["rev-parse", "--abbrev-ref", "HEAD"])))
        .unwrap_or_else(|| "unknown".into());
    // Reproducible builds set SOURCE_DATE_EPOCH: the date is then that one, not today. The form
    // is the one Prometheus's own binaries print.
    let mut date = Command::new("date");
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => date.args(["-u", "-d", &format!("@{epoch}"), "+%Y%m%d-%H:%M:%S"]),
        Err(_) => date.args(["-u", "+%Y%m%d-%H:%M:%S"]),
    };
    let date = run(&mut date).unwrap_or_else(|| "unknown".into());
    let user = std::env::var("WHATSAPP_EXPORTER_BUILD_USER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let host = run(&mut Command::new("hostname")).unwrap_or_else(|| "unknown".into());
            format!("{who}@{host}")
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(Command::new(rustc).arg("--version"))
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WHATSAPP_EXPORTER_REVISION={revision}");
    println!("cargo:rustc-env=WHATSAPP_EXPORTER_BUILD_DATE={date}");
    println!("cargo:rustc-env=WHATSAPP_EXPORTER_BRANCH={branch}");
    println!("cargo:rustc-env=WHATSAPP_EXPORTER_BUILD_USER={user}");
    println!("cargo:rustc-env=WHATSAPP_EXPORTER_RUSTC={rustc}");
    println!("cargo:rerun-if-env-changed=WHATSAPP_EXPORTER_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=WHATSAPP_EXPORTER_BRANCH");
    println!("cargo:rerun-if-env-changed=WHATSAPP_EXPORTER_BUILD_USER");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
}

/// The trimmed standard output of a command that succeeded.
fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
