//! The binary as a user runs it: `--config.check`, `--version`, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_whatsapp_exporter");

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_check_exits_0_or_1_and_names_gateway_and_key() {
    let good = write("good.yml", "gateways:\n  - name: a\n    provider: plugzapi\n    instance: I\n    token: ${CLI_TEST_TOKEN}\n");
    let out = Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(&good)
        .env("CLI_TEST_TOKEN", "tok-CLI-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid, 1 gateway(s)"));

    let bad = write("bad.yml", "gateways:\n  - name: onprem\n    provider: waba\n    url: https://w\n    auth: login\n    password: pw-CLI-SECRET\n");
    let out = Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateways[0] (onprem): auth: login needs username"),
        "{err}"
    );
    assert!(!err.contains("pw-CLI-SECRET"));

    let out = Command::new(BIN).args(["--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad command line exits 2");
}

#[test]
fn version_is_in_the_prometheus_form() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    let mut lines = v.lines();
    let first = lines.next().unwrap_or("");
    let rest = first
        .strip_prefix(&format!(
            "whatsapp_exporter, version {} (branch: ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{v}"));
    assert!(rest.contains(", revision: ") && rest.ends_with(')'), "{v}");
    for key in ["build user:", "build date:", "rust version:", "platform:"] {
        assert!(
            lines.clone().any(|l| l.trim_start().starts_with(key)),
            "{key} missing in {v}"
        );
    }
}

#[test]
fn config_check_without_secrets_lints_a_file_whose_secrets_are_elsewhere() {
    let dir = std::env::temp_dir().join(format!("wa-nosecrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yml");
    std::fs::write(
        &file,
        "gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token_file: /run/secrets/not-here\n  - name: b\n    provider: greenapi\n    instance: 1\n    token: ${NOT_SET_IN_CI}\n",
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec!["--config.check", "--config.file", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        Command::new(BIN).args(args).output().unwrap()
    };
    assert_eq!(check(&[]).status.code(), Some(1), "the secrets are missing");
    let out = check(&["--config.no-secrets"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, "gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token_file: /x\n    tokn: typo\n").unwrap();
    let out = check(&["--config.no-secrets"]);
    assert_eq!(out.status.code(), Some(1), "a wrong key is still an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokn"));
}

/// SIGTERM ends the demo (gateways, webhooks, server) promptly and cleanly.
#[test]
fn sigterm_stops_the_exporter() {
    let mut child = Command::new(BIN)
        .args(["--demo", "--web.listen-address", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("listening"));
    assert!(listening.is_some(), "the exporter did not start");
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        // A liveness bound, not a figure: the exporter means to exit within a second.
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let rest: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    assert!(rest.contains("shutting down"), "{rest}");
    for secret in [
        "demo-token-not-secret",
        "demo-client-token",
        "demo-waba-password",
    ] {
        assert!(!rest.contains(secret), "{secret} in the log");
    }
}
