//! `herald check-config` as an operator runs it: the built binary on a configuration file. A bad
//! `[relay]` section is listed with every other section's problems, in one list, and the command fails;
//! the example configuration in the repository passes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `herald --config <path> check-config` with no `HERALD_*` variables from the caller.
fn check_config(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .arg("--config")
        .arg(path)
        .arg("check-config")
        .output()
        .unwrap()
}

#[test]
fn relay_problems_are_listed_with_the_others_and_the_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        "[c2s]\nlisten = \"nowhere\"\n\
         [relay]\nenabled = true\nlisten = \"not-an-address\"\n\
         [relay.fcm]\nservice_account_file = \"/nonexistent/service-account.json\"\n\
         [relay.http]\nmax_connections = 0\n",
    )
    .unwrap();
    let output = check_config(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .skip_while(|line| *line != "configuration problems:")
        .skip(1)
        .filter_map(|line| line.strip_prefix("  - "))
        .collect();
    for expected in [
        "c2s.listen:",
        "relay.listen: \"not-an-address\"",
        "relay.fcm.service_account_file: /nonexistent/service-account.json:",
        "relay.http.max_connections:",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in the list:\n{stderr}"
        );
    }
    assert!(output.stdout.is_empty(), "no OK line on failure");
}

#[test]
fn the_example_configuration_passes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../herald.example.toml");
    let output = check_config(&path);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("configuration OK"));
}
