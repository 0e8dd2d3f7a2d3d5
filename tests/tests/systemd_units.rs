//! The shipped systemd units pass `systemd-analyze verify` with their `ExecStart=` pointed at
//! the binaries under test. Skipped (with a note) where systemd-analyze is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use sixfold_tests::bin_path;

/// Where the units point their binaries; the test swaps in the built ones.
const INSTALLED_BIN_DIR: &str = "/usr/local/bin/";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("systemd")
}

/// Whether `systemd-analyze` can run here. CI (`.ci/run`) installs it and sets
/// `SIXFOLD_REQUIRE_SYSTEMD`, so there a missing tool fails the test instead of skipping it.
fn have_systemd_analyze() -> bool {
    let present = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        present || std::env::var_os("SIXFOLD_REQUIRE_SYSTEMD").is_none(),
        "systemd-analyze is missing but SIXFOLD_REQUIRE_SYSTEMD is set"
    );
    if !present {
        eprintln!("systemd-analyze not installed: skipping the unit check");
    }
    present
}

/// The unit text with `ExecStart=` using the built `binary` and without `User=`/`Group=` (the
/// test machine has no `sixfold` user; verify would fail on it).
fn rewrite_unit(text: &str, binary: &str) -> String {
    let installed = format!("{INSTALLED_BIN_DIR}{binary}");
    let built = bin_path(binary).display().to_string();
    let mut exec_lines = 0;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("User=") && !l.starts_with("Group="))
        .map(|l| {
            if l.starts_with("ExecStart=") {
                assert!(l.contains(&installed), "unexpected ExecStart: {l}");
                exec_lines += 1;
                l.replace(&installed, &built)
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(exec_lines, 1, "one ExecStart= line expected");
    lines.join("\n") + "\n"
}

/// Runs `systemd-analyze verify` on `unit` and asserts it is clean for the unit's own file.
fn verify(unit: &Path, unit_file: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify {} failed:\n{text}",
        unit.display()
    );
    let dir = unit_file.parent().expect("unit dir").display().to_string();
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&dir))
        .filter(|l| {
            ["Unknown", "Failed", "Invalid", "ignoring"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complains about {}:\n{}",
        unit_file.display(),
        complaints.join("\n")
    );
}

/// Copies a unit from `systemd/` into `dir` with the binary rewritten; returns the copy.
fn install(dir: &Path, unit: &str, binary: &str) -> PathBuf {
    let text = std::fs::read_to_string(systemd_dir().join(unit)).expect("read unit");
    assert!(text.contains("Type=notify"), "{unit} is not Type=notify");
    assert!(text.contains("WatchdogSec="), "{unit} has no watchdog");
    let path = dir.join(unit);
    std::fs::write(&path, rewrite_unit(&text, binary)).expect("write unit");
    path
}

#[test]
fn gateway_unit_verifies() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = install(dir.path(), "sixfold-gateway.service", "sixfold-gateway");
    verify(&unit, &unit);
}

#[test]
fn node_template_unit_verifies_as_an_instance() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let template = install(dir.path(), "sixfold-node@.service", "sixfold-node");
    // An instance is loaded from its template: systemd resolves `name@inst.service` through
    // a file or link of that name next to `name@.service`.
    let instance = dir.path().join("sixfold-node@disk1.service");
    std::os::unix::fs::symlink("sixfold-node@.service", &instance).expect("instance link");
    verify(&instance, &template);
}
